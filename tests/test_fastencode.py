"""The vectorized encoder writes exactly what the exact one writes, or steps aside.

``fastencode`` must never change a byte of a payload, a row's line number or an error:
whenever it takes its fast path the result equals ``binary.encode``'s, and whenever it
has a doubt it hands the input to ``binary.encode``. Pure logic, no database.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import fakedata
from lab.errors import LabError
from strategies import binary, fastencode
from strategies.catalog import Column
from tests.test_strategies_pgtypes import INPUTS, OIDS

RECORDS = [
    Column("id", "bigint", 20),
    Column("uuid", "uuid", 2950),
    Column("name", "text", 25),
    Column("email", "text", 25),
    Column("amount", "numeric(12,2)", 1700),
    Column("quantity", "integer", 23),
    Column("created_at", "timestamp with time zone", 1184),
    Column("is_active", "boolean", 16),
    Column("score", "double precision", 701),
    Column("category", "text", 25),
]


def body(rows: int, seed: int = 7) -> bytes:
    data = fakedata.csv_bytes(rows, seed=seed)
    return data[data.index(b"\n") + 1 :]


def lines_of(encoded: binary.Encoded) -> list[int]:
    return [encoded.line_map.line(r) for r in range(encoded.total_rows)]


def exact(data: bytes, columns: list[Column], sinks: int = 1) -> tuple[list[bytes], list[int]]:
    out = [io.BytesIO() for _ in range(sinks)]
    encoded = binary.encode(io.BytesIO(data), columns, out)
    return [o.getvalue() for o in out], lines_of(encoded)


def fast_only(
    data: bytes, columns: list[Column], sinks: int = 1
) -> tuple[list[bytes], list[int]] | None:
    """The fast path's result, or None when it steps aside."""
    raw = io.BytesIO()
    scan = fastencode.spool_and_scan(io.BytesIO(data), raw)
    if not scan.finish():
        return None
    out = [io.BytesIO() for _ in range(sinks)]
    try:
        encoded = fastencode.encode_fast(raw, columns, out, scan)
    except fastencode.Fallback:
        return None
    return [o.getvalue() for o in out], lines_of(encoded)


@pytest.mark.parametrize("sinks", [1, 3])
def test_generated_file_takes_the_fast_path_with_identical_bytes_and_lines(sinks):
    data = body(9000)  # quotes, embedded line breaks, NULLs, several 2048-row blocks
    fast = fast_only(data, RECORDS, sinks)
    assert fast is not None
    assert fast == exact(data, RECORDS, sinks)


def test_small_pieces_and_scan_chunks_change_nothing(monkeypatch):
    data = body(3000, seed=3)
    expected = exact(data, RECORDS)
    monkeypatch.setattr(fastencode, "BLOCK_BYTES", 1000)
    monkeypatch.setattr(fastencode, "SCAN_BYTES", 97)
    assert fast_only(data, RECORDS) == expected


@pytest.mark.parametrize("type_name", list(INPUTS))
def test_each_value_is_fast_and_identical_or_left_to_the_exact_parser(type_name):
    column = [Column("c", type_name, OIDS[type_name])]
    for value in INPUTS[type_name]:
        if "\x00" in value:
            continue
        quoted = '"' + value.replace('"', '""') + '"'
        data = f"{quoted}\n{quoted}\n".encode()
        try:
            expected = exact(data, column)
        except LabError:
            assert fast_only(data, column) is None, value
            continue
        fast = fast_only(data, column)
        assert fast is None or fast == expected, value


def test_typical_values_take_the_fast_path():
    rows = [
        "1,9a2b3c4d-0000-4000-8000-00000000000A,x,,-12.5,-7,2024-05-01 12:30:00.5-05:30,t,-0.25,",
        '2,,"",y,0,0,2024-02-29T00:00:00Z,off,1e0,z',
    ]
    data = ("\n".join(rows) + "\n").encode()
    assert fast_only(data, RECORDS) is None  # "1e0" is outside the float fast form
    data = data.replace(b"1e0", b"1.0")
    fast = fast_only(data, RECORDS)
    assert fast is not None and fast == exact(data, RECORDS)


@pytest.mark.parametrize(
    "data",
    [
        b"1,a\r\n2,b\r\n",  # CRLF line endings
        b"1,a\n\n2,b\n",  # blank line
        b'1,a"b\n',  # quote inside an unquoted field
        b'1,"a"b\n',  # text after a closing quote
        b'1,"a\nb"\n2,c\n',  # line break inside the first record
        b"1,a\n\\.\n",  # end-of-data marker
        b'1,"a\n',  # unterminated quote
        b"1,a\r2,b\r",  # CR line endings
    ],
)
def test_structural_doubts_step_aside(data):
    scan = fastencode.StructureScan()
    scan.feed(data)
    assert not scan.finish()


@pytest.mark.parametrize(
    "data",
    [b"1,a\r\n2,b\r\n", b'1,a"b\n', b'1,"a"b,c\n', b"1,a\n\n2,b\n", b"1,a\n2\n"],
)
def test_encode_equals_exact_including_errors(data):
    columns = [Column("n", "integer", 23), Column("t", "text", 25)]
    try:
        expected: object = exact(data, columns)[0]
    except LabError as exc:
        expected = exc.to_dict()
    out = io.BytesIO()
    try:
        fastencode.encode(io.BytesIO(data), columns, [out])
        got: object = [out.getvalue()]
    except LabError as exc:
        got = exc.to_dict()
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**31), 2**31 - 1),
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
                | st.sampled_from(['"', "\n", "\r", ",", "\\"]),
                max_size=12,
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 300),
)
def test_scan_agrees_with_exact_parser_on_random_text(rows, chunk):
    """Any text field, any chunking: fast (when taken) equals exact, lines included."""
    columns = [Column("n", "integer", 23), Column("t", "text", 25)]
    lines = []
    for n, text, quote in rows:
        field = '"' + text.replace('"', '""') + '"' if quote or text == "" else text
        lines.append(f"{n},{field}")
    data = ("\n".join(lines) + "\n").encode()
    try:
        expected = exact(data, columns)
    except LabError:
        return
    scan = fastencode.StructureScan()
    for i in range(0, len(data), chunk):
        scan.feed(data[i : i + chunk])
    whole = fastencode.StructureScan()
    whole.feed(data)
    assert scan.finish() == whole.finish()
    fast = fast_only(data, columns)
    assert fast is None or fast == expected
