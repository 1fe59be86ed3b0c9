"""Every registered strategy against the real database: values, atomicity, errors, timing.

One tricky CSV (quoting, line breaks in quotes, 4-byte UTF-8, NULL vs. "", numeric
rounding and extremes, bigint limits, timestamps with and without offsets, every boolean
spelling, NaN/Infinity) must land with exactly the expected values through every
strategy; bad input must leave the table unchanged and raise the same LabError.
"""

from __future__ import annotations

import io
import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

import strategies
from lab.errors import LabError
from lab.fakedata import csv_bytes
from strategies.base import DirectConnector

ALL = strategies.names()
HEADER = "id,uuid,name,email,amount,quantity,created_at,is_active,score,category"
U = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
UV = uuid.UUID(U)
T0 = datetime(2024, 5, 1, 12, 30, 45, tzinfo=UTC)
BOOLS = {
    **dict.fromkeys(["t", "tr", "tru", "true", "TRUE", "TrUe", "y", "ye", "yes", "on", "1"], True),
    **dict.fromkeys(["f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "OFF", "0"], False),
    " true ": True,
    "\tno\t": False,
}

# (CSV text of each field, the row PostgreSQL must hold). Written out field by field so
# every quoting case is visible. The NULL rule: unquoted empty → NULL, "" → ''.
CASES: list[tuple[list[str], tuple[object, ...]]] = [
    (
        [
            "-9223372036854775808",
            "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}",
            '"Smith, Jane"',
            '""',
            "9999999999.99",
            "2147483647",
            "2024-02-29 23:59:59.999999+00",
            "t",
            "NaN",
            "",
        ],
        (
            -(2**63),
            UV,
            "Smith, Jane",
            "",
            Decimal("9999999999.99"),
            2**31 - 1,
            datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
            True,
            "NaN",
            None,
        ),
    ),
    (
        [
            "9223372036854775807",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            '"Dwayne ""The Rock"" Johnson"',
            "",
            "-9999999999.99",
            "-2147483648",
            "2024-05-01T12:30:45+05:30",
            "TRUE",
            "Infinity",
            '"a,b"',
        ],
        (
            2**63 - 1,
            UV,
            'Dwayne "The Rock" Johnson',
            None,
            Decimal("-9999999999.99"),
            -(2**31),
            T0 - timedelta(hours=5, minutes=30),
            True,
            math.inf,
            "a,b",
        ),
    ),
    (
        [
            "3",
            U,
            '"first line\nsecond line"',
            "e",
            "1.005",
            " 42 ",
            "2024-05-01 12:30:45",
            "yes",
            "-Infinity",
            "北京市 👩‍💻",
        ],
        (
            3,
            UV,
            "first line\nsecond line",
            "e",
            Decimal("1.01"),
            42,
            T0,
            True,
            -math.inf,
            "北京市 👩‍💻",
        ),
    ),
    (
        [
            "4",
            U,
            '"carriage\r\nreturn"',
            "😀",
            "-1.005",
            "+7",
            "2024-05-01T12:30:45.1234567+02",
            "off",
            "1e-300",
            "José Müller-Øster",
        ],
        (
            4,
            UV,
            "carriage\r\nreturn",
            "😀",
            Decimal("-1.01"),
            7,
            datetime(2024, 5, 1, 10, 30, 45, 123457, tzinfo=UTC),
            False,
            1e-300,
            "José Müller-Øster",
        ),
    ),
    (
        ["5", U, '""', '" "', "0.004", "0", "2024-05-01T12:30:45Z", "0", "-0.0", '","'],
        (5, UV, "", " ", Decimal("0.00"), 0, T0, False, -0.0, ","),
    ),
    (
        [
            "6",
            U,
            '"a ""quoted"" word, and a comma"',
            '"\n"',
            "-0.005",
            "-0",
            "2024-05-01 12:30:45-08",
            "",
            "1.7976931348623157e308",
            '"tab\there"',
        ],
        (
            6,
            UV,
            'a "quoted" word, and a comma',
            "\n",
            Decimal("-0.01"),
            0,
            T0 + timedelta(hours=8),
            None,
            1.7976931348623157e308,
            "tab\there",
        ),
    ),
    (
        ["7", U, "plain", "x", "1.2345e3", "1_000", "2024-05-01 12:30", "1", "4.9e-324", "c"],
        (7, UV, "plain", "x", Decimal("1234.50"), 1000, T0.replace(second=0), True, 5e-324, "c"),
    ),
    (
        ["8", U, "", "", "", "", "", "", "", ""],
        (8, UV, None, None, None, None, None, None, None, None),
    ),
    (
        ["9", U, 'ab"c,d"e', "x", ".5", "0x1F", "2000-01-01", "tr", "  3.25  ", "c"],
        (
            9,
            UV,
            "abc,de",
            "x",
            Decimal("0.50"),
            31,
            datetime(2000, 1, 1, tzinfo=UTC),
            True,
            3.25,
            "c",
        ),
    ),
]
for i, (spelling, value) in enumerate(BOOLS.items()):
    CASES.append(
        (
            [str(100 + i), U, "b", "b", "1", "1", "2024-05-01T12:30:45+00:00", spelling, "1", "b"],
            (100 + i, UV, "b", "b", Decimal("1.00"), 1, T0, value, 1.0, "b"),
        )
    )

TRICKY = (HEADER + "\n" + "".join(",".join(fields) + "\n" for fields, _ in CASES)).encode()


def normalize(row: tuple[object, ...]) -> tuple[object, ...]:
    """NaN never equals itself, and -0.0 == 0.0 hides the sign: compare them by repr."""
    return tuple(repr(v) if isinstance(v, float) else v for v in row)


def _id(row: tuple[object, ...]) -> int:
    value = row[0]
    assert isinstance(value, int)
    return value


def table_rows(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
    rows = conn.execute("SELECT * FROM ingest.records ORDER BY id").fetchall()
    out = []
    for row in rows:
        ts = row[6]
        fixed = list(row)
        if isinstance(ts, datetime):
            fixed[6] = ts.astimezone(UTC)
        out.append(normalize(tuple(fixed)))
    return out


def want() -> list[tuple[object, ...]]:
    rows = []
    for _, row in sorted(CASES, key=lambda c: _id(c[1])):
        fixed = list(row)
        if fixed[8] == "NaN":
            fixed[8] = float("nan")
        rows.append(normalize(tuple(fixed)))
    return rows


@pytest.fixture
def empty(conn: psycopg.Connection[tuple[object, ...]]) -> psycopg.Connection[tuple[object, ...]]:
    conn.execute("TRUNCATE ingest.records, ingest.records_pk")
    conn.execute("DELETE FROM lab.uploads")
    return conn


def count(conn: psycopg.Connection[tuple[object, ...]], table: str = "records") -> int:
    row = conn.execute(f"SELECT count(*) FROM ingest.{table}").fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def staging_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'lab' AND relname LIKE 'stage%'"
    ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize("name", ALL)
def test_tricky_values_round_trip_exactly(name, db, empty):
    result = strategies.get(name).load(io.BytesIO(TRICKY), "records", db)
    assert result.rows == len(CASES)
    assert result.bytes == len(TRICKY)
    assert result.strategy == name
    assert table_rows(empty) == want()


def test_every_strategy_stores_identical_generated_rows(db, empty):
    """All strategies agree with the server's own CSV parsing on realistic data."""
    data = csv_bytes(3000, seed=11, quote_share=0.2, null_share=0.05)
    # Also a variant without CR characters, which arrow-adbc reads with pyarrow itself.
    plain = data.replace(b"\r", b"")
    for payload in (data, plain):
        dumps = {}
        for name in ALL:
            empty.execute("TRUNCATE ingest.records")
            strategies.get(name).load(io.BytesIO(payload), "records", db)
            rows = empty.execute("SELECT * FROM ingest.records ORDER BY id").fetchall()
            dumps[name] = [normalize(r) for r in rows]
        reference = dumps["psycopg-text"]
        assert len(reference) == 3000
        for name in ALL:
            assert dumps[name] == reference, name


GOOD_ROW = f"1,{U},n,e,1.00,1,2024-01-01,t,1.5,c\n"
MULTILINE_ROW = f'2,{U},"two\nlines",e,1.00,1,2024-01-01,t,1.5,c\n'
# (input after the header, expected (status, line, column)). Lines follow PostgreSQL:
# the header is line 1 and a line break inside quotes counts (MULTILINE_ROW is 2 lines).
BAD_INPUTS = {
    "too_few_fields": (
        GOOD_ROW + MULTILINE_ROW + f"3,{U},n,e,1.00,1,2024-01-01,t,1.5\n",
        (400, 5, "category"),
    ),
    "too_many_fields": (GOOD_ROW + f"3,{U},n,e,1.00,1,2024-01-01,t,1.5,c,x\n", (400, 3, None)),
    "type_error": (
        GOOD_ROW + MULTILINE_ROW + f"3,{U},n,e,abc,1,2024-01-01,t,1.5,c\n",
        (422, 5, "amount"),
    ),
    "integer_out_of_range": (
        GOOD_ROW + f"3,{U},n,e,1,2147483648,2024-01-01,t,1.5,c\n",
        (422, 3, "quantity"),
    ),
    "bad_boolean": (GOOD_ROW + f"3,{U},n,e,1,1,2024-01-01,o,1.5,c\n", (422, 3, "is_active")),
    "numeric_overflow": (
        GOOD_ROW + f"3,{U},n,e,9999999999.995,1,2024-01-01,t,1.5,c\n",
        (422, 3, "amount"),
    ),
    "invalid_utf8": (GOOD_ROW + f"3,{U},n\xff,e,1,1,2024-01-01,t,1.5,c\n", (400, 3, None)),
    "nul_byte": (GOOD_ROW + f"3,{U},n\x00,e,1,1,2024-01-01,t,1.5,c\n", (400, 3, None)),
    "unterminated_quote": (
        GOOD_ROW + f'3,{U},"n,e,1,1,2024-01-01,t,1.5,c\n4,{U},n\n',
        (400, 5, None),
    ),
    "blank_line": (GOOD_ROW + "\n", (400, 3, "uuid")),
    # PostgreSQL does not count line breaks inside the first record (line ending unknown).
    "after_multiline_first_record": (
        MULTILINE_ROW + f"3,{U},n,e,x,1,2024-01-01,t,1.5,c\n",
        (422, 3, "amount"),
    ),
    "crlf_file": (
        f'1,{U},"a\r\nb",e,1,1,2024-01-01,t,1.5,c\r\n3,{U},n,e,x,1,2024-01-01,t,1.5,c\r\n',
        (422, 4, "amount"),
    ),
    "mixed_line_endings": (GOOD_ROW + f"3,{U},n,e,1,1,2024-01-01,t,1.5,c\r\n", (400, 3, None)),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("name", ALL)
def test_bad_input_is_one_located_error_and_loads_nothing(name, case, db, empty):
    body, (status, line, column) = BAD_INPUTS[case]
    raw = (HEADER + "\n").encode() + body.encode("utf-8", "surrogateescape")
    if case == "invalid_utf8":
        raw = raw.replace("\xff".encode(), b"\xff")
    with pytest.raises(LabError) as info:
        strategies.get(name).load(io.BytesIO(raw), "records", db)
    err = info.value
    assert (err.code, err.status, err.line, err.column) == ("bad_csv", status, line, column)
    assert err.message and len(err.message) < 200
    assert count(empty) == 0
    assert staging_tables(empty) == []


@pytest.mark.parametrize("name", ALL)
def test_bad_value_in_last_row_leaves_table_unchanged(name, db, empty):
    strategies.get(name).load(io.BytesIO(csv_bytes(50, seed=1)), "records", db)
    data = csv_bytes(5000, seed=2) + f"5001,{U},n,e,1.00,1,2024-01-01,maybe,1.5,c\n".encode()
    with pytest.raises(LabError) as info:
        strategies.get(name).load(io.BytesIO(data), "records", db)
    assert info.value.column == "is_active"
    assert info.value.line is not None and info.value.line > 5001
    assert count(empty) == 50
    assert staging_tables(empty) == []


@pytest.mark.parametrize("name", ALL)
def test_server_side_violation_rolls_back(name, db, empty):
    """A duplicate key is only found by the server: still nothing loaded, still LabError."""
    rows = f"1,{U},n,e,1,1,2024-01-01,t,1,c\n7,{U},n,e,1,1,2024-01-01,t,1,c\n" * 2
    with pytest.raises(LabError) as info:
        strategies.get(name).load(io.BytesIO((HEADER + "\n" + rows).encode()), "records_pk", db)
    assert info.value.status == 422
    assert count(empty, "records_pk") == 0
    assert staging_tables(empty) == []


@pytest.mark.parametrize("name", ALL)
def test_header_is_checked_before_any_row(name, db, empty):
    for header, column in ((HEADER + ",extra", "extra"), (HEADER.replace(",category", ""), None)):
        data = (header + "\n" + GOOD_ROW).encode()
        with pytest.raises(LabError) as info:
            strategies.get(name).load(io.BytesIO(data), "records", db)
        assert info.value.code == "bad_header" and info.value.line == 1
        if column:
            assert info.value.column == column
    with pytest.raises(LabError) as info:
        strategies.get(name).load(io.BytesIO(TRICKY), "uploads", db)
    assert info.value.code == "unknown_table"
    assert count(empty) == 0


@pytest.mark.parametrize("name", ALL)
def test_header_order_is_free(name, db, empty):
    header = "category,id,uuid,name,email,amount,quantity,created_at,is_active,score"
    data = f"{header}\nc,1,{U},n,,2.5,3,2024-01-01,t,1.5\n"
    strategies.get(name).load(io.BytesIO(data.encode()), "records", db)
    row = empty.execute("SELECT id, category, email, amount FROM ingest.records").fetchone()
    assert row == (1, "c", None, Decimal("2.50"))


@pytest.mark.parametrize("name", ALL)
def test_finalize_runs_inside_the_load_transaction(name, db, empty):
    upload = uuid.uuid4()
    empty.execute(
        "INSERT INTO lab.uploads (upload_id, target_table, strategy, status) "
        "VALUES (%s, 'records', %s, 'loading')",
        (upload, name),
    )

    def finalize(rows: int) -> str:
        return (
            f"UPDATE lab.uploads SET status = 'succeeded', rows = {rows} "
            f"WHERE upload_id = '{upload}'"
        )

    result = strategies.get(name).load(io.BytesIO(TRICKY), "records", db, finalize=finalize)
    row = empty.execute("SELECT status, rows FROM lab.uploads WHERE upload_id = %s", (upload,))
    assert row.fetchone() == ("succeeded", result.rows)

    # A finalize statement that fails takes the rows down with it.
    empty.execute("TRUNCATE ingest.records")
    with pytest.raises(Exception) as info:
        strategies.get(name).load(
            io.BytesIO(TRICKY), "records", db, finalize=lambda rows: "SELECT * FROM lab.nowhere"
        )
    assert not isinstance(info.value, LabError)
    assert count(empty) == 0


@pytest.mark.parametrize("name", ALL)
def test_timings_are_consistent(name, db, empty):
    result = strategies.get(name).load(io.BytesIO(csv_bytes(2000, seed=5)), "records", db)
    t = result.timings
    assert result.rows == 2000
    assert t.in_db_ms > 0 and t.commit_ms > 0
    assert t.total_ms >= t.parse_ms + t.commit_ms
    assert (t.parse_ms > 0) == (not strategies.REGISTRY[name].streaming)
    assert sum(ms for _, ms in result.steps) <= t.in_db_ms + 1e-6


@pytest.mark.parametrize("name", ["psycopg-text", "psycopg-binary", "asyncpg-copy"])
def test_in_db_time_matches_pg_stat_statements(name, db, empty):
    """in_db_ms (server clock around the COPY) agrees with the server's own statistics."""
    empty.execute("SELECT pg_stat_statements_reset()")
    result = strategies.get(name).load(io.BytesIO(csv_bytes(20_000, seed=6)), "records", db)
    rows = empty.execute(
        "SELECT sum(total_exec_time) FROM pg_stat_statements "
        "WHERE query ILIKE 'COPY%%records%%' AND dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    assert rows is not None and rows[0] is not None
    exec_ms = float(rows[0])  # type: ignore[arg-type]
    in_db = result.timings.in_db_ms
    # The COPY runs inside the clock window; the window adds only the two clock queries.
    assert exec_ms <= in_db + 0.5
    assert in_db - exec_ms < max(0.2 * in_db, 20)


def test_parallel_workers_come_from_constructor_or_environment(db, empty, monkeypatch):
    from strategies.parallel_binary import ParallelBinary

    monkeypatch.setenv("LAB_PARALLEL_WORKERS", "3")
    assert ParallelBinary().workers == 3
    monkeypatch.delenv("LAB_PARALLEL_WORKERS")
    assert ParallelBinary().workers >= 1
    result = ParallelBinary(workers=4).load(io.BytesIO(csv_bytes(9000, seed=8)), "records", db)
    assert result.rows == 9000 == count(empty)
    with pytest.raises(LabError):
        ParallelBinary(workers=0)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(LabError) as info:
        strategies.get("nope")
    assert all(name in info.value.message for name in ALL)


def test_unlogged_staging_reports_both_steps(db, empty):
    result = strategies.get("unlogged-staging").load(io.BytesIO(TRICKY), "records", db)
    assert [name for name, _ in result.steps] == ["stage_copy", "move"]


def test_connector_is_the_only_way_in(db_url):
    assert DirectConnector(db_url).conninfo == db_url


def test_timezone_pin_does_not_leak(db_url):
    """SET LOCAL: a pooled connection keeps its own TimeZone after a load."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        conn.commit()

        class Same:
            conninfo = db_url

            def connection(self):  # type: ignore[no-untyped-def]
                import contextlib

                @contextlib.contextmanager
                def cm():  # type: ignore[no-untyped-def]
                    yield conn

                return cm()

        data = (HEADER + "\n" + f"1,{U},n,e,1,1,2024-01-01 00:00,t,1,c\n").encode()
        strategies.get("psycopg-text").load(io.BytesIO(data), "records", Same())
        tz = conn.execute("SHOW TimeZone").fetchone()
        assert tz == ("America/New_York",)
        stored = conn.execute("SELECT created_at FROM ingest.records WHERE id = 1").fetchone()
        assert stored is not None
        assert stored[0] == datetime(2024, 1, 1, tzinfo=UTC)
        conn.execute("TRUNCATE ingest.records")
        conn.commit()
