"""The no-data-lost audit: what the clients were told against what the database holds.

A load run truncates its table, then every 2xx answer is written down (upload id and
rows) by the load generator. Afterwards three numbers must agree:

* the rows acknowledged by 2xx responses,
* ``count(*)`` of the table,
* the rows of the run's ledger entries (``lab.uploads``) with status ``succeeded``,

and the ledger must hold every acknowledged upload id as succeeded with the same row
count, and every succeeded upload must have been acknowledged. The table has no
upload id column, so the totals are what prove that failed or rejected uploads left no
rows behind: any leaked row would make ``count(*)`` exceed the succeeded ledger rows.

``compare`` is pure; ``fetch`` and ``audit`` do the I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from lab.database import connect
from lab.errors import LabError

#: Ledger statuses of an upload that has not finished either way.
UNFINISHED = ("pending", "loading")
#: How many offending upload ids a failed check lists.
SHOWN = 5


@dataclass(frozen=True)
class Ack:
    """One 2xx response as the load generator recorded it."""

    upload_id: str
    rows: int
    strategy: str
    started: float  # epoch seconds, client clock, request sent
    finished: float  # epoch seconds, client clock, response read


@dataclass(frozen=True)
class AckLog:
    """Everything the load generator wrote down during one run."""

    acks: tuple[Ack, ...]
    #: Requests the service refused as it should (deliberately bad CSV, 4xx JSON error).
    rejected: int = 0
    #: Requests that failed in any other way (5xx, transport error, broken contract).
    errors: int = 0


@dataclass(frozen=True)
class LedgerRow:
    upload_id: str
    status: str
    rows: int | None
    in_db_ms: float | None = None
    total_ms: float | None = None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class AuditResult:
    acknowledged_uploads: int
    acknowledged_rows: int
    table_rows: int
    succeeded_uploads: int
    succeeded_rows: int
    failed_uploads: int
    unfinished_uploads: int
    rejected_requests: int
    checks: tuple[Check, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


def _some(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def compare(log: AckLog, ledger: Iterable[LedgerRow], table_rows: int) -> AuditResult:
    """Hold the acknowledgements, the ledger and the table count against each other."""
    ledger = list(ledger)
    by_id = {row.upload_id: row for row in ledger}
    succeeded = [row for row in ledger if row.status == "succeeded"]
    failed = [row for row in ledger if row.status == "failed"]
    unfinished = [row for row in ledger if row.status in UNFINISHED]
    acked_rows = sum(ack.rows for ack in log.acks)
    succeeded_rows = sum(row.rows or 0 for row in succeeded)

    checks: list[Check] = []
    checks.append(
        Check(
            "acknowledged rows = rows in the table",
            acked_rows == table_rows,
            f"{acked_rows} acknowledged, {table_rows} in the table",
        )
    )
    checks.append(
        Check(
            "rows in the table = rows of succeeded uploads in the ledger",
            table_rows == succeeded_rows,
            f"{table_rows} in the table, {succeeded_rows} in {len(succeeded)} succeeded "
            f"ledger rows ({len(failed)} failed uploads left "
            f"{'no rows' if table_rows == succeeded_rows else 'a difference'})",
        )
    )
    duplicates = [uid for uid, n in Counter(ack.upload_id for ack in log.acks).items() if n > 1]
    checks.append(
        Check(
            "each upload id acknowledged once",
            not duplicates,
            f"acknowledged twice: {_some(duplicates)}" if duplicates else "no repeats",
        )
    )
    missing = [ack.upload_id for ack in log.acks if ack.upload_id not in by_id]
    not_succeeded = [
        ack.upload_id
        for ack in log.acks
        if ack.upload_id in by_id and by_id[ack.upload_id].status != "succeeded"
    ]
    wrong_rows = [
        ack.upload_id
        for ack in log.acks
        if ack.upload_id in by_id
        and by_id[ack.upload_id].status == "succeeded"
        and by_id[ack.upload_id].rows != ack.rows
    ]
    problems = []
    if missing:
        problems.append(f"not in the ledger: {_some(missing)}")
    if not_succeeded:
        problems.append(f"not succeeded in the ledger: {_some(not_succeeded)}")
    if wrong_rows:
        problems.append(f"different row count in the ledger: {_some(wrong_rows)}")
    checks.append(
        Check(
            "every acknowledged upload is succeeded in the ledger with the same rows",
            not problems,
            "; ".join(problems) or f"{len(log.acks)} of {len(log.acks)} match",
        )
    )
    acked_ids = {ack.upload_id for ack in log.acks}
    unacked = [row.upload_id for row in succeeded if row.upload_id not in acked_ids]
    checks.append(
        Check(
            "every succeeded upload was acknowledged to its client",
            not unacked,
            f"committed without a 2xx reaching the client: {_some(unacked)}"
            if unacked
            else f"{len(succeeded)} of {len(succeeded)} acknowledged",
        )
    )
    checks.append(
        Check(
            "no upload left pending or loading",
            not unfinished,
            f"unfinished: {_some(row.upload_id for row in unfinished)}" if unfinished else "none",
        )
    )
    return AuditResult(
        acknowledged_uploads=len(log.acks),
        acknowledged_rows=acked_rows,
        table_rows=table_rows,
        succeeded_uploads=len(succeeded),
        succeeded_rows=succeeded_rows,
        failed_uploads=len(failed),
        unfinished_uploads=len(unfinished),
        rejected_requests=log.rejected,
        checks=tuple(checks),
    )


# -- I/O -------------------------------------------------------------------------------------


def read_log(path: Path) -> AckLog:
    """Parse the JSON-lines file the locustfile appends to (missing file: nothing sent)."""
    if not path.exists():
        return AckLog(acks=())
    acks: list[Ack] = []
    rejected = errors = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record["kind"]
            if kind == "ack":
                acks.append(
                    Ack(
                        upload_id=str(record["upload_id"]),
                        rows=int(record["rows"]),
                        strategy=str(record["strategy"]),
                        started=float(record["started"]),
                        finished=float(record["finished"]),
                    )
                )
            elif kind == "rejected":
                rejected += 1
            else:
                errors += 1
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(
                f"acknowledgement file {path} line {number} is unreadable: {exc}",
                code="bad_ack_file",
            ) from None
    return AckLog(acks=tuple(acks), rejected=rejected, errors=errors)


def table_ident(table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier("ingest"), sql.Identifier(table))


def start_run(url: str, table: str) -> dt.datetime:
    """Empty the run's table and return the database clock from which its uploads count."""
    with connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"ingest.{table}",)).fetchone()
        if not exists or exists[0] is None:
            raise LabError(
                f"table ingest.{table} does not exist (run `lab db migrate`?)",
                code="unknown_table",
            )
        conn.execute(sql.SQL("TRUNCATE {}").format(table_ident(table)))
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None and isinstance(row[0], dt.datetime)
    return row[0]


def empty(url: str, table: str) -> None:
    """Truncate the run's table after the audit: a load run leaves no bulk data behind."""
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(table_ident(table)))


def server_version(url: str) -> str:
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def fetch(url: str, table: str, since: dt.datetime) -> tuple[list[LedgerRow], int]:
    """The ledger rows of uploads into ``table`` since ``since``, and the table's row count."""
    with connect(url, autocommit=True) as conn:
        records = conn.execute(
            "SELECT upload_id::text, status, rows, in_db_ms, total_ms FROM lab.uploads"
            " WHERE target_table = ANY(%s) AND created_at >= %s",
            ([table, f"ingest.{table}"], since),
        ).fetchall()
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(table_ident(table))
        ).fetchone()
    ledger = [
        LedgerRow(
            upload_id=str(uid),
            status=str(status),
            rows=None if rows is None else int(str(rows)),
            in_db_ms=None if in_db is None else float(str(in_db)),
            total_ms=None if total is None else float(str(total)),
        )
        for uid, status, rows, in_db, total in records
    ]
    return ledger, int(str(count[0])) if count else 0


def audit(url: str, table: str, since: dt.datetime, ack_file: Path) -> AuditResult:
    ledger, table_rows = fetch(url, table, since)
    return compare(read_log(ack_file), ledger, table_rows)
