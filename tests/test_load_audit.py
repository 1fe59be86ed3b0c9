"""The audit's SQL against the real database: a leaked row is caught, a clean run passes."""

from __future__ import annotations

import io
import uuid

from experiments import audit
from experiments.audit import Ack, AckLog
from lab.fakedata import csv_bytes


def _load(conn, rows: int, seed: int) -> None:
    with conn.cursor().copy("COPY ingest.records FROM STDIN (FORMAT csv, HEADER true)") as copy:
        copy.write(io.BytesIO(csv_bytes(rows, seed=seed)).getvalue())


def _ledger(conn, status: str, rows: int | None, table: str = "records") -> str:
    upload_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO lab.uploads (upload_id, target_table, strategy, status, rows, in_db_ms)"
        " VALUES (%s, %s, 'psycopg-text', %s, %s, 12.5)",
        (upload_id, table, status, rows),
    )
    return upload_id


def test_start_run_empties_the_table_and_scopes_the_ledger(db_url, conn):
    _load(conn, 10, seed=1)
    old = _ledger(conn, "succeeded", 10)
    since = audit.start_run(db_url, "records")
    assert conn.execute("SELECT count(*) FROM ingest.records").fetchone()[0] == 0
    ledger, table_rows = audit.fetch(db_url, "records", since)
    assert table_rows == 0
    assert old not in {row.upload_id for row in ledger}


def test_fetch_and_compare_pass_on_a_consistent_run(db_url, conn):
    since = audit.start_run(db_url, "records")
    acked = []
    for seed in (1, 2):
        _load(conn, 30, seed=seed)
        acked.append(Ack(_ledger(conn, "succeeded", 30), 30, "psycopg-text", 0.0, 1.0))
    _ledger(conn, "failed", None)
    _ledger(conn, "succeeded", 999, table="records_pk")  # another table: not this run's
    ledger, table_rows = audit.fetch(db_url, "records", since)
    result = audit.compare(AckLog(tuple(acked)), ledger, table_rows)
    assert result.passed, result.failures()
    assert (result.table_rows, result.succeeded_uploads, result.failed_uploads) == (60, 2, 1)
    assert {row.in_db_ms for row in ledger} == {12.5}


def test_rows_left_by_a_failed_upload_fail_the_audit(db_url, conn):
    since = audit.start_run(db_url, "records")
    _load(conn, 30, seed=1)
    ack = Ack(_ledger(conn, "succeeded", 30), 30, "psycopg-text", 0.0, 1.0)
    _load(conn, 5, seed=2)  # rows no succeeded upload accounts for
    _ledger(conn, "failed", None)
    ledger, table_rows = audit.fetch(db_url, "records", since)
    result = audit.compare(AckLog((ack,)), ledger, table_rows)
    assert not result.passed
    assert {c.name for c in result.failures()} == {
        "acknowledged rows = rows in the table",
        "rows in the table = rows of succeeded uploads in the ledger",
    }
