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
    assert "dropped 0 orphaned part tables" in out
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


def _committed_parts(conn: Conn, target: catalog.Target, n: int) -> list[psycopg.sql.Identifier]:
    """N filled part tables committed and never published: what a worker killed between
    its slices' commits and the publish leaves behind."""
    tables = parts.names("records", n)
    for table in tables:
        with conn.transaction():
            parts.create(conn, table, target)
            conn.execute(psycopg.sql.SQL("INSERT INTO {} (id) VALUES (1)").format(table))
    return tables


def _exists(conn: Conn, table: psycopg.sql.Identifier) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)).fetchone()
    return bool(row and row[0])


def test_orphaned_parts_are_dropped_and_a_running_loads_are_not(db_url, empty):
    target = catalog.resolve(empty, "records")
    dead = _committed_parts(empty, target, 2)
    running = _committed_parts(empty, target, 2)
    attached = _committed_parts(empty, target, 1)
    empty.execute(psycopg.sql.SQL("ALTER TABLE {} INHERIT {}").format(attached[0], target.ident))
    # The running load holds its lock on its own connection, as parallel loads do.
    with psycopg.connect(db_url, autocommit=True) as owner:
        with parts.load_lock(owner, running):
            dropped = parts.drop_orphans(empty)
            assert sorted(dropped) == sorted(t.as_string(empty) for t in dead)
            assert not any(_exists(empty, t) for t in dead)
            assert all(_exists(empty, t) for t in running + attached)
        # Its connection gone or its lock released, the load's tables are orphans too.
        assert len(parts.drop_orphans(empty)) == 2
    assert all(_exists(empty, t) for t in attached)  # published parts are never orphans
    # Every worker sweeps at boot (service.db.reap_at_boot), as it reaps the ledger.
    more = _committed_parts(empty, target, 2)
    app = create_app({"SETTINGS": Settings(database_url=db_url), "TESTING": True})
    try:
        assert not any(_exists(empty, t) for t in more)
    finally:
        close_db(app)
        close_maintenance(app)


def test_a_parallel_load_holds_its_lock_until_published(db, empty):
    """While a parallel-text load reads its upload, its lock is taken; after, it is free."""
    held: list[int] = []

    class Watching(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = self._data.readinto(buffer)
            if n == 0 and not held:
                held.append(_advisory_locks(empty))
            return n

    ParallelText(2).load(
        io.BufferedReader(Watching(fakedata.csv_bytes(5000, seed=2))), "records", db
    )
    assert held == [1]
    assert _advisory_locks(empty) == 0


def _advisory_locks(conn: Conn) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
        (0x1AB1,),
    ).fetchone()
    return int(row[0]) if row else 0
