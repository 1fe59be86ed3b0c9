"""parallel-freeze: slices become children of the target in one commit, or leave no trace."""

from __future__ import annotations

import io

import psycopg
import pytest

from lab import fakedata
from lab.errors import LabError
from strategies import binary
from strategies.parallel_freeze import PARTS_SCHEMA, ParallelFreeze

Conn = psycopg.Connection[tuple[object, ...]]


def parts(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s ORDER BY 1",
        (PARTS_SCHEMA,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def count(conn: Conn, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM ingest.{table}").fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


@pytest.fixture
def checked(conn: Conn) -> Conn:
    """A target whose CHECK constraint only the server enforces."""
    conn.execute("DROP TABLE IF EXISTS ingest.checked CASCADE")
    conn.execute("CREATE TABLE ingest.checked (n integer CHECK (n < 100000), t text)")
    for name in parts(conn):
        conn.execute(f"DROP TABLE {PARTS_SCHEMA}.{name}")
    return conn


def csv(rows: int, bad_row: int | None = None) -> bytes:
    lines = ["n,t"] + [f"{100000 if r == bad_row else r},x{r}" for r in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_slices_are_attached_children_and_rows_match(db, conn):
    conn.execute("TRUNCATE ingest.records")
    data = fakedata.csv_bytes(5000, seed=11)
    before = set(parts(conn))
    result = ParallelFreeze(workers=2).load(io.BytesIO(data), "records", db)
    assert result.rows == 5000 == count(conn, "records")
    new = set(parts(conn)) - before
    assert len(new) == 2
    inherits = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ingest.records'::regclass "
        "AND inhrelid::regclass::text = ANY(%s)",
        ([f"{PARTS_SCHEMA}.{p}" for p in new],),
    ).fetchone()
    assert inherits == (2,)
    conn.execute("TRUNCATE ingest.records")


def test_slices_without_rows_are_dropped_not_attached(db, conn):
    """A file smaller than one block of rows fills one slice: the others' empty tables
    would only be more children for every query on the target to plan and scan."""
    conn.execute("TRUNCATE ingest.records")
    before = set(parts(conn))
    result = ParallelFreeze(workers=3).load(
        io.BytesIO(fakedata.csv_bytes(100, seed=12)), "records", db
    )
    assert result.rows == 100 == count(conn, "records")
    assert len(set(parts(conn)) - before) == 1
    conn.execute("TRUNCATE ingest.records")


def test_a_failing_slice_leaves_target_unchanged_and_no_tables(db, checked):
    checked.execute("INSERT INTO ingest.checked VALUES (1, 'before')")
    bad = binary.BLOCK_ROWS + 5  # the second block: the second of two slices
    with pytest.raises(LabError) as info:
        ParallelFreeze(workers=2).load(io.BytesIO(csv(6000, bad)), "checked", db)
    assert info.value.status == 422
    assert info.value.line == bad + 2  # header is line 1, row 0 is line 2
    assert count(checked, "checked") == 1
    assert parts(checked) == []


def test_a_failing_publish_leaves_target_unchanged_and_no_tables(db, checked):
    def finalize(rows: int) -> str:
        return "SELECT * FROM lab.no_such_table"

    with pytest.raises(psycopg.errors.UndefinedTable):
        ParallelFreeze(workers=3).load(io.BytesIO(csv(5000)), "checked", db, finalize=finalize)
    assert count(checked, "checked") == 0
    assert parts(checked) == []


def test_unique_target_gets_rows_moved_not_children(db, conn):
    conn.execute("TRUNCATE ingest.records_pk")
    result = ParallelFreeze(workers=2).load(
        io.BytesIO(fakedata.csv_bytes(3000, seed=5)), "records_pk", db
    )
    assert result.rows == 3000 == count(conn, "records_pk")
    children = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ingest.records_pk'::regclass"
    ).fetchone()
    assert children == (0,)
    assert parts(conn) == [] or all(not p.startswith("records_pk") for p in parts(conn))
    conn.execute("TRUNCATE ingest.records_pk")
