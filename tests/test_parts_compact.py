"""Part tables folded back into their target: by hand (``parts.compact``, ``lab compact``)
and by the service once a target has more than LAB_MAX_PARTS of them."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import psycopg
import pytest

from lab import fakedata
from lab.config import Settings
from service import create_app
from service.db import close_db
from service.maintenance import close as close_maintenance
from strategies import catalog, parts
from strategies.parallel_freeze import ParallelFreeze
from strategies.parallel_text import ParallelText

Conn = psycopg.Connection[tuple[object, ...]]


def children(conn: Conn, table: str = "records") -> int:
    return len(parts.attached(conn, catalog.resolve(conn, table)))


def content(conn: Conn) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT * FROM ingest.records ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
    ).fetchall()


@pytest.fixture
def empty(conn: Conn) -> Conn:
    parts.empty_target(conn, catalog.resolve(conn, "records"))
    return conn


def test_compact_moves_every_row_into_the_target_and_drops_the_parts(db, empty):
    for seed, strategy in enumerate([ParallelText(2, block_bytes=4096), ParallelFreeze(2)]):
        strategy.load(io.BytesIO(fakedata.csv_bytes(3000, seed=seed)), "records", db)
    assert children(empty) == 4
    before = content(empty)
    done = parts.compact(empty, catalog.resolve(empty, "records"))
    assert (done.parts, done.rows) == (4, 6000)
    assert children(empty) == 0
    assert content(empty) == before
    only = empty.execute("SELECT count(*) FROM ONLY ingest.records").fetchone()
    assert only == (6000,)
    leftovers = empty.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        (parts.SCHEMA,),
    ).fetchone()
    assert leftovers == (0,)


def test_compact_without_rows_only_drops_the_parts(db, empty):
    ParallelText(2, block_bytes=4096).load(io.BytesIO(fakedata.csv_bytes(2000)), "records", db)
    done = parts.compact(empty, catalog.resolve(empty, "records"), keep_rows=False)
    assert (done.parts, done.rows) == (2, 0)
    assert content(empty) == []


def test_lab_compact_command(db, db_url, empty):
    # 3000 rows: two blocks of binary.BLOCK_ROWS, one per slice (an empty slice is dropped)
    ParallelFreeze(2).load(io.BytesIO(fakedata.csv_bytes(3000, seed=3)), "records", db)
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "compact", "records"],
        env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ingest.records: folded 2 part tables (3000 rows)" in out
    assert children(empty) == 0
    bad = subprocess.run(
        [sys.executable, "-m", "lab.cli", "compact", "nope"],
        env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "unknown table 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_service_folds_parts_back_once_there_are_too_many(db_url, empty):
    settings = Settings(database_url=db_url, max_parts=3, parallel_workers=2)
    app = create_app({"SETTINGS": settings, "TESTING": True})
    try:
        client = app.test_client()
        for seed in range(3):  # 2, 4, 6 parts: the second upload crosses the line
            body = fakedata.csv_bytes(3000, seed=seed)  # ~420 KB: two blocks, two parts
            answer = client.post(
                "/upload?strategy=parallel-text", data=body, headers={"Content-Type": "text/csv"}
            )
            assert answer.status_code == 201, answer.get_json()
            deadline = time.monotonic() + 30
            while children(empty) > 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        close_maintenance(app)  # waits for a compaction still running
        assert children(empty) <= 3
        counted = empty.execute("SELECT count(*) FROM ingest.records").fetchone()
        assert counted == (9000,)
        folded = empty.execute("SELECT count(*) FROM ONLY ingest.records").fetchone()
        assert folded == (6000,)  # the first two uploads' rows now live in the target
    finally:
        close_maintenance(app)
        close_db(app)
