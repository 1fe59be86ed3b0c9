"""The client-side parsers agree with PostgreSQL itself, value by value.

Each input is cast by the real server (``SELECT %s::type`` with the pinned session
settings) and converted by ``pgtypes``; whenever the converter accepts a value, the
server must store the same thing, and whatever the server rejects, the converter must
reject too. Only date/time spellings outside ISO 8601 may be refused by the converter
alone (documented), never silently read differently.
"""

from __future__ import annotations

import io
import struct
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import binary, csvparse, pgtypes
from strategies.catalog import Column

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

INPUTS: dict[str, list[str]] = {
    "smallint": ["32767", "-32768", "32768", " 1 ", "1_0", "0x7fff", "1.0", "", " ", "+-1"],
    "integer": [
        "2147483647",
        "-2147483648",
        "2147483648",
        "0b101",
        "0o17",
        "0x_1F",
        "1__0",
        "_1",
        "1_",
        "  -0  ",
        "0x",
        "٣",
        "1e3",
        "12a",
    ],
    "bigint": [
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "0x7FFFFFFFFFFFFFFF",
        "007",
    ],
    "numeric(12,2)": [
        "1.005",
        "-1.005",
        "0.005",
        "-0.004",
        "9999999999.994",
        "9999999999.995",
        "1e2",
        "1.5E-1",
        ".5",
        "5.",
        ".",
        "1_000.5",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        " 12.345 ",
        "0x10",
        "1e",
        "00001.10",
        "-0",
        "1e-20",
        "abc",
    ],
    "numeric": [
        "1.500",
        "1e3",
        "1.5e-3",
        "-0.000",
        "NaN",
        "Infinity",
        "-Infinity",
        "123456789012345678901234567890.123456789",
        "0.0001",
        "10000",
        "1e-7",
    ],
    "double precision": [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "+inf",
        "-INF",
        "1e308",
        "1e309",
        "1e-320",
        "1e-400",
        "0.0",
        "-0",
        " 1.5 ",
        "0x1p3",
        "1_0",
        "1.7976931348623157e308",
        "2.2250738585072014e-308",
        "abc",
        ".5",
        "5.",
        "1e",
        "+.5e-3",
    ],
    "real": ["1.5", "3.4028235e38", "3.5e38", "1e-46", "1.17549435e-38", "NaN", "0.1"],
    "boolean": [
        "t",
        "tr",
        "tru",
        "true",
        "truex",
        "f",
        "fa",
        "fal",
        "fals",
        "false",
        "y",
        "ye",
        "yes",
        "n",
        "no",
        "on",
        "o",
        "of",
        "off",
        "offf",
        "1",
        "0",
        "2",
        "10",
        " TRUE ",
        "\tOff\n",
        "",
        "Yes",
        "nO",
    ],
    "uuid": [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "A0EEBC999C0B4EF8BB6D6BB9BD380A11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",
        "a0eebc999-c0b-4ef8-bb6d-6bb9bd380a11",
    ],
    "timestamp with time zone": [
        "2024-05-01 12:30:45",
        "2024-05-01T12:30:45Z",
        "2024-05-01 12:30:45+05:30",
        "2024-05-01 12:30:45-0800",
        "2024-05-01 12:30:45 +02",
        "2024-05-01T12:30:45.1234565",
        "2024-05-01 12:30:45.9999995",
        "2024-02-30 00:00:00",
        "2023-02-29",
        "2024-02-29",
        "2024-05-01 24:00:00",
        "2024-05-01 24:00:01",
        "2024-05-01 23:59:60",
        "2024-05-01 12:61:00",
        "2024-13-01",
        "infinity",
        "-infinity",
        "epoch",
        "2024-05-01 12:30:45+15:59",
        "2024-05-01 12:30:45+16:00",
        "0001-01-01 00:00:00",
        "2024-05-01 12:30:45 UTC",
        "1999-12-31 23:59:59.5+01:30:15",
        "2024-5-1 1:2:3",
        "2024-05-01T12:30",
        "not a date",
    ],
    "timestamp without time zone": [
        "2024-05-01 12:30:45",
        "2024-05-01 12:30:45+05:30",
        "infinity",
        "2024-05-01",
    ],
    "date": [
        "2024-05-01",
        "2024-02-30",
        "infinity",
        "-infinity",
        "epoch",
        "2000-01-01",
        "0000-01-01",
    ],
}

OIDS = {
    "smallint": 21,
    "integer": 23,
    "bigint": 20,
    "numeric(12,2)": 1700,
    "numeric": 1700,
    "double precision": 701,
    "real": 700,
    "boolean": 16,
    "uuid": 2950,
    "timestamp with time zone": 1184,
    "timestamp without time zone": 1114,
    "date": 1082,
}


def as_server_value(type_name: str, value: object) -> object:
    """The converter's value in the form psycopg returns for the server's."""
    if type_name == "real":
        return struct.pack(">f", value)
    if type_name == "double precision":
        return repr(value)
    if type_name == "uuid":
        assert isinstance(value, bytes)
        return uuid.UUID(bytes=value)
    if type_name.startswith("timestamp"):
        assert isinstance(value, int)
        if value in (pgtypes.TIMESTAMP_INFINITY, pgtypes.TIMESTAMP_MINUS_INFINITY):
            return "infinity" if value > 0 else "-infinity"
        moment = PG_EPOCH + timedelta(microseconds=value)
        return moment if "with time zone" in type_name else moment.replace(tzinfo=None)
    if type_name == "date":
        assert isinstance(value, int)
        if value in (pgtypes.DATE_INFINITY, pgtypes.DATE_MINUS_INFINITY):
            return "infinity" if value > 0 else "-infinity"
        return date(2000, 1, 1) + timedelta(days=value)
    if isinstance(value, Decimal) and value.is_nan():
        return "NaN"
    return value


def server_value(conn: psycopg.Connection[tuple[object, ...]], text: str, type_name: str) -> object:
    """The server's reading of ``text`` (``str`` of infinities, repr of floats), or an error."""
    with conn.transaction():
        for name, setting in pgtypes.SESSION_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, setting))
        special = type_name.startswith(("timestamp", "date"))
        query = f"SELECT %s::{type_name}" + ("::text" if special else "")
        row = conn.execute(query, (text,)).fetchone()
        assert row is not None
        value = row[0]
    if special and value not in ("infinity", "-infinity"):
        row = conn.execute(f"SELECT %s::{type_name}", (text,)).fetchone()
        assert row is not None
        value = row[0]
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC)
    if isinstance(value, float):
        return struct.pack(">f", value) if type_name == "real" else repr(value)
    if isinstance(value, Decimal) and value.is_nan():
        return "NaN"
    return value


@pytest.mark.parametrize("type_name", sorted(INPUTS))
def test_converters_agree_with_the_server(type_name, conn):
    convert = pgtypes.converter(Column("c", type_name, OIDS[type_name]))
    for text in INPUTS[type_name]:
        try:
            expected = server_value(conn, text, type_name)
        except psycopg.errors.DataError:
            expected = None
        try:
            got = as_server_value(type_name, convert(text))
        except ValueError as exc:
            if expected is not None:
                assert "unsupported" in str(exc), (type_name, text, exc)
            continue
        assert expected is not None, (type_name, text, "server rejects, converter accepted")
        assert got == expected, (type_name, text)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.decimals(min_value=-9999999999, max_value=9999999999, allow_nan=False, places=4)
    | st.builds(
        lambda i, e: Decimal(i).scaleb(e),
        st.integers(-(10**40), 10**40),
        st.integers(-40, 20),
    )
)
def test_numeric_binary_encoding_round_trips_through_the_server(value, conn):
    """numeric_send's layout, read back by the server's numeric_recv: same value, same scale."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS n (v numeric)")
    conn.execute("TRUNCATE n")
    with conn.cursor().copy("COPY n FROM STDIN (FORMAT binary)") as copy:
        copy.write(
            binary.SIGNATURE + struct.pack(">h", 1) + binary._numeric(value) + binary.TRAILER
        )
    stored = conn.execute("SELECT v::text, %s::numeric::text FROM n", (str(value),)).fetchone()
    assert stored is not None
    assert stored[0] == stored[1]


def lines(data: bytes) -> list[tuple[int, list[str | None]]]:
    return list(csvparse.records(io.BytesIO(data)))


def test_csv_null_rule_and_quoting():
    assert lines(b'a,,"",""""\n') == [(2, ["a", None, "", '"'])]
    # PostgreSQL reads a quote inside an unquoted field as the start of a quoted part.
    assert lines(b'x"y,z"w,v\n') == [(2, ["xy,zw", "v"])]
    assert lines(b"last,line") == [(2, ["last", "line"])]


def test_csv_line_numbers_count_breaks_inside_quotes():
    # As in PostgreSQL (checked against psycopg-text in the round-trip tests): breaks in
    # the first record are not counted yet, since the line ending is still unknown there.
    data = b'1,"a\nb\nc"\n2,x\n3,"y\n"\n4,z'
    assert [line for line, _ in lines(data)] == [2, 3, 5, 6]
    crlf = b'1,"a\r\nb"\r\n2,x\r\n'
    assert lines(crlf) == [(3, ["1", "a\r\nb"]), (4, ["2", "x"])]


def test_csv_reads_across_chunk_boundaries(monkeypatch):
    """Records, CRLF pairs and multi-byte characters split between reads stay whole."""
    monkeypatch.setattr(csvparse, "READ_BYTES", 3)
    data = '1,"é\r\n😀",x\r\n2,"",y\r\n'.encode()
    assert lines(data) == [(3, ["1", "é\r\n😀", "x"]), (4, ["2", "", "y"])]
