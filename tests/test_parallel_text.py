"""parallel-text: the upload dealt at record boundaries to N COPY streams.

The dealer is checked on its own (every stream gets whole records, the upload's line of
every stream line is right); the strategy is checked against ``psycopg-text``, one COPY of
the whole file, with blocks so small that nearly every record switches stream: same rows,
same error (status, line, column) for every catalog case.
"""

from __future__ import annotations

import csv as pycsv
import io
from collections.abc import Iterator

import psycopg
import pytest
from badinput_catalog import CASES, Case, row
from badinput_catalog import csv as catalog_csv
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import fakedata
from lab.errors import LabError
from strategies import parts
from strategies.base import DirectConnector
from strategies.parallel_text import ParallelText
from strategies.psycopg_text import PsycopgText
from strategies.recordsplit import Dealer

Conn = psycopg.Connection[tuple[object, ...]]


def deal(body: bytes, streams: int, block: int, chunk: int) -> tuple[Dealer, list[bytes]]:
    dealer = Dealer(streams, first_line=2, block_bytes=block)
    out = [b""] * streams
    for start in range(0, len(body), chunk):
        for k, piece in dealer.feed(body[start : start + chunk]):
            out[k] += piece
    return dealer, out


def records(data: bytes) -> list[list[str]]:
    return list(pycsv.reader(io.StringIO(data.decode(), newline="")))


FIELD = st.text(alphabet='ab,"\n\r', max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(FIELD, min_size=2, max_size=2), min_size=1, max_size=30),
    streams=st.integers(1, 3),
    block=st.integers(1, 40),
    chunk=st.integers(1, 50),
)
def test_every_stream_gets_whole_records(rows, streams, block, chunk):
    text = io.StringIO(newline="")
    pycsv.writer(text, lineterminator="\n").writerows(rows)
    body = text.getvalue().encode()
    _, out = deal(body, streams, block, chunk)
    assert b"".join(out) != b"" or body == b""
    dealt = [r for part in out for r in records(part)]
    assert sorted(dealt) == sorted(records(body))
    for part in out[1:]:  # PostgreSQL would miscount a quoted break in a stream's first line
        first = part.split(b"\n", 1)[0]
        assert first.count(b'"') % 2 == 0
        assert b"\r" not in first  # counted as a line before the stream knows its ending


def test_line_of_maps_each_stream_line_back_to_the_upload():
    body = b"".join(
        f'{i},"x{i}\ny"\n'.encode() if i % 3 == 1 else f"{i},z\n".encode() for i in range(40)
    )
    dealer, out = deal(body, 3, 10, 7)
    upload_lines = body.split(b"\n")
    for k, part in enumerate(out):
        for n, line in enumerate(part.split(b"\n")[:-1], start=1):
            assert upload_lines[dealer.line_of(k, n) - 2] == line


def test_quoted_carriage_returns_do_not_stop_the_split():
    body = b'1,"a\r\nb"\n2,c\n' * 50
    dealer, out = deal(body, 2, 16, 64)
    assert not dealer.pinned
    assert all(out)


@pytest.mark.parametrize("marker", [b"3,c\r\n", b"\\.\n"])
def test_a_line_ending_cr_or_end_marker_keeps_the_rest_in_one_stream(marker):
    head = b"1,a\n2,b\n" * 20
    dealer, out = deal(head + marker + b"4,d\n" * 20, 2, 8, 32)
    assert dealer.pinned
    tail = out[dealer.current]
    assert tail.endswith(marker + b"4,d\n" * 20) or marker in tail


def test_an_end_marker_split_across_two_chunks_keeps_the_rest_in_one_stream():
    """PostgreSQL before 18 ends CSV data at ``\\.``: what follows must not reach a
    stream of its own, wherever the upload's reads happen to cut it."""
    dealer = Dealer(2, first_line=2, block_bytes=8)
    dealer.feed(b"1,a\n2,b\n" * 20 + b"\\")
    assert not dealer.pinned
    dealer.feed(b".\n" + b"4,d\n" * 20)
    assert dealer.pinned


@pytest.fixture
def clean(conn: Conn) -> Iterator[Conn]:
    conn.execute("TRUNCATE ingest.records, ingest.records_pk")
    yield conn
    conn.execute("TRUNCATE ingest.records, ingest.records_pk")


def stored(conn: Conn, table: str = "records") -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM ingest.{table} ORDER BY id, name").fetchall()


def part_tables(conn: Conn) -> int:
    row_ = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        (parts.SCHEMA,),
    ).fetchone()
    assert row_ is not None
    return int(row_[0])  # type: ignore[call-overload]


def outcome(strategy, body: bytes, table: str, db: DirectConnector, conn: Conn):
    """What one load does: its rows, or its error's (status, code, line, column)."""
    conn.execute(f"TRUNCATE ingest.{table}")
    try:
        result = strategy.load(io.BytesIO(body), table, db)
    except LabError as exc:
        return ("error", exc.status, exc.code, exc.line, exc.column, stored(conn, table))
    return ("ok", result.rows, stored(conn, table))


STRATEGY_CASES = [c for c in CASES if c.send == "raw" and not c.headers and not c.big]


@pytest.mark.parametrize("case", STRATEGY_CASES, ids=[c.id for c in STRATEGY_CASES])
def test_catalog_case_matches_one_copy_of_the_whole_file(db, clean, case: Case):
    body = case.body()
    reference = outcome(PsycopgText(), body, "records", db, clean)
    split = outcome(ParallelText(workers=3, block_bytes=1), body, "records", db, clean)
    assert split == reference
    assert part_tables(clean) == len(set(parts_children(clean)))


def parts_children(conn: Conn) -> list[str]:
    """Part tables still attached as children (loads that succeeded keep theirs)."""
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits "
            "WHERE inhparent IN ('ingest.records'::regclass, 'ingest.records_pk'::regclass)"
        ).fetchall()
    ]


def bad_at(lines: list[int], total: int = 60, first: str = '"multi\nline"') -> bytes:
    quoted = {i: '"multi\nline"' for i in range(7, total, 7)} | {0: first}
    out = []
    for i in range(total):
        values = {"quantity": "oops"} if i in lines else {}
        out.append(row(i, name=quoted.get(i, "n"), **values))
    return catalog_csv(*out)


@pytest.mark.parametrize("bad", [[0], [5], [33], [59], [40, 12], [12, 40]])
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("first", ["n", '"multi\nline"', '"a\r\nb\nc"', '"a\rb"'])
def test_errors_report_the_earliest_line_like_one_copy(db, clean, bad, workers, first):
    """One COPY counts the first record's quoted line breaks its own way (it does not know
    the line ending yet); the other lines must still come out as it numbers them."""
    body = bad_at(bad, first=first)
    reference = outcome(PsycopgText(), body, "records", db, clean)
    assert reference[0] == "error"
    split = outcome(ParallelText(workers=workers, block_bytes=64), body, "records", db, clean)
    assert split == reference


@pytest.mark.parametrize("bad", [[9], [30], [59]])
def test_quoted_carriage_returns_after_the_first_record_keep_lines_like_one_copy(db, clean, bad):
    """A quoted CR in a stream's first line would count as a line there (PostgreSQL does
    not know that stream's line ending yet), but not in one COPY of the whole file."""
    rows_ = []
    for i in range(60):
        values = {"quantity": "oops"} if i in bad else {}
        rows_.append(row(i, name='"a\rb"' if i % 2 else "n", **values))
    body = catalog_csv(*rows_)
    reference = outcome(PsycopgText(), body, "records", db, clean)
    assert reference[0] == "error" and reference[3] == bad[0] + 2
    for block in (1, 64, 100):
        split = outcome(ParallelText(workers=2, block_bytes=block), body, "records", db, clean)
        assert split == reference


def test_fake_data_round_trip_equals_one_copy(db, clean):
    body = fakedata.csv_bytes(3000, seed=4)
    reference = outcome(PsycopgText(), body, "records", db, clean)
    split = outcome(ParallelText(workers=2, block_bytes=4096), body, "records", db, clean)
    assert split == reference
    assert reference[1] == 3000


def test_parts_become_children_and_empty_ones_are_dropped(db, clean):
    before = part_tables(clean)
    body = catalog_csv(row(1), row(2))
    result = ParallelText(workers=3).load(io.BytesIO(body), "records", db)
    assert result.rows == 2
    assert part_tables(clean) == before + 1  # one block: the other two parts were empty


def test_unique_target_gets_rows_moved(db, clean):
    before = part_tables(clean)
    body = fakedata.csv_bytes(500, seed=2)
    result = ParallelText(workers=2, block_bytes=1024).load(io.BytesIO(body), "records_pk", db)
    assert result.rows == 500 == len(stored(clean, "records_pk"))
    assert part_tables(clean) == before


def test_duplicate_key_across_streams_fails_whole_load(db, clean):
    before = part_tables(clean)
    body = catalog_csv(*[row(i % 40) for i in range(80)])
    with pytest.raises(LabError) as info:
        ParallelText(workers=2, block_bytes=256).load(io.BytesIO(body), "records_pk", db)
    assert info.value.status == 422
    assert stored(clean, "records_pk") == []
    assert part_tables(clean) == before


class Broken(io.RawIOBase):
    """An upload whose sender goes away after ``size`` bytes."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = io.BytesIO(data[:size])

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):  # type: ignore[no-untyped-def]
        n = self._data.readinto(buffer)
        if n == 0:
            raise ConnectionResetError("client went away")
        return n


def test_a_broken_upload_rolls_every_stream_back(db, clean):
    before = part_tables(clean)
    body = fakedata.csv_bytes(2000, seed=3)
    source = io.BufferedReader(Broken(body, len(body) // 2), buffer_size=4096)
    with pytest.raises(ConnectionResetError):
        ParallelText(workers=2, block_bytes=2048).load(source, "records", db)
    assert stored(clean) == []
    assert part_tables(clean) == before


def test_finalize_runs_in_the_publishing_transaction(db, clean):
    seen: list[int] = []

    def finalize(rows: int) -> str:
        seen.append(rows)
        return "SELECT * FROM lab.no_such_table"

    before = part_tables(clean)
    body = fakedata.csv_bytes(700, seed=9)
    with pytest.raises(psycopg.errors.UndefinedTable):
        ParallelText(workers=2, block_bytes=1024).load(
            io.BytesIO(body), "records", db, finalize=finalize
        )
    assert seen == [700]
    assert stored(clean) == []
    assert part_tables(clean) == before
