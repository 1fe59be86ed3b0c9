"""The bad-input catalog as data: each malformed or hostile upload, how it is sent, and the
answer the service owes it (a 4xx JSON error located by line and column, or — for the
few inputs that are merely unusual — the exact rows stored).

``tests/test_harden_badinput.py`` runs every case through the HTTP service under every
strategy; ``docs/security.md`` lists the same table for readers.
"""

from __future__ import annotations

import functools
import gzip
import random
from collections.abc import Callable
from dataclasses import dataclass, field

HEADER = "id,uuid,name,email,amount,quantity,created_at,is_active,score,category"
U = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def row(id_: int, *, name: str = "n", eol: str = "\n", **values: str) -> str:
    """One valid data line; keyword arguments replace single fields."""
    fields = {
        "id": str(id_),
        "uuid": U,
        "name": name,
        "email": "e",
        "amount": "1.00",
        "quantity": "1",
        "created_at": "2024-01-01",
        "is_active": "t",
        "score": "1.5",
        "category": "c",
    }
    fields.update(values)
    return ",".join(fields.values()) + eol


def csv(*rows: str, header: str = HEADER, eol: str = "\n") -> bytes:
    return (header + eol + "".join(rows)).encode("utf-8", "surrogateescape")


GOOD = row(1)


@dataclass(frozen=True)
class Case:
    """One catalog entry. ``status`` 201 means accepted: ``rows`` are then the exact
    ``(id, name, category)`` stored, in id order."""

    id: str
    description: str
    body: Callable[[], bytes]
    status: int
    code: str | None = None
    line: int | None = None
    column: str | None = None
    #: "raw" (text/csv body), "multipart" (the file field), "multipart-nofile",
    #: "multipart-two" (two file fields).
    send: str = "raw"
    headers: dict[str, str] = field(default_factory=dict)
    rows: tuple[tuple[int, str | None, str | None], ...] = ()
    #: Big inputs: run through fewer paths to keep the suite short (see the tests).
    big: bool = False


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


@functools.cache
def field_50mb() -> bytes:
    return csv(row(1, name="x" * (50 * 1024 * 1024)))


@functools.cache
def long_data_line() -> bytes:
    # 16 MiB on one line: two million fields where ten are expected.
    return csv(GOOD, ",".join(["1"] * (2 * 1024 * 1024)) + "\n")


@functools.cache
def long_header_line() -> bytes:
    return csv(GOOD, header=HEADER + "," + "h" * (1024 * 1024))


@functools.cache
def garbage() -> bytes:
    return random.Random(7).randbytes(256 * 1024)


def _gzip_csv() -> bytes:
    return gzip.compress(csv(GOOD, row(2)), mtime=0)


FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "@SUM(A1)", "-2+3", '=HYPERLINK("http://x","y")']


def _formulas() -> bytes:
    lines = []
    for i, value in enumerate(FORMULAS, 1):
        quoted = '"' + value.replace('"', '""') + '"'
        lines.append(row(i, name=quoted, category=quoted))
    return csv(*lines)


CASES: list[Case] = [
    # -- CSV structure ----------------------------------------------------------------
    Case(
        "unterminated_quote",
        "a quote that never closes",
        _const(csv(GOOD, row(3, name='"n'), row(4))),
        400,
        "bad_csv",
        5,  # PostgreSQL counts the lines it consumed looking for the quote, plus one
    ),
    Case(
        "too_many_fields",
        "eleven fields",
        _const(csv(GOOD, row(3)[:-1] + ",x\n")),
        400,
        "bad_csv",
        3,
    ),
    Case(
        "too_few_fields",
        "nine fields",
        _const(csv(GOOD, row(3).rsplit(",", 1)[0] + "\n")),
        400,
        "bad_csv",
        3,
        "category",
    ),
    Case(
        "blank_line",
        "an empty line between records",
        _const(csv(GOOD, "\n", row(3))),
        400,
        "bad_csv",
        3,
        "uuid",
    ),
    # -- a bad value for each column type ---------------------------------------------
    Case(
        "bad_bigint", "id: not a number", _const(csv(GOOD, row(3, id="x"))), 422, "bad_csv", 3, "id"
    ),
    Case(
        "bigint_overflow",
        "id: 2^63",
        _const(csv(GOOD, row(3, id="9223372036854775808"))),
        422,
        "bad_csv",
        3,
        "id",
    ),
    Case(
        "bad_uuid",
        "uuid: not a uuid",
        _const(csv(GOOD, row(3, uuid="not-a-uuid"))),
        422,
        "bad_csv",
        3,
        "uuid",
    ),
    Case(
        "bad_numeric",
        "amount: letters",
        _const(csv(GOOD, row(3, amount="abc"))),
        422,
        "bad_csv",
        3,
        "amount",
    ),
    Case(
        "numeric_overflow",
        "amount: beyond numeric(12,2)",
        _const(csv(GOOD, row(3, amount="10000000000"))),
        422,
        "bad_csv",
        3,
        "amount",
    ),
    Case(
        "bad_integer",
        "quantity: a fraction",
        _const(csv(GOOD, row(3, quantity="1.5"))),
        422,
        "bad_csv",
        3,
        "quantity",
    ),
    Case(
        "integer_overflow",
        "quantity: 2^31",
        _const(csv(GOOD, row(3, quantity="2147483648"))),
        422,
        "bad_csv",
        3,
        "quantity",
    ),
    Case(
        "bad_timestamp",
        "created_at: month 13",
        _const(csv(GOOD, row(3, created_at="2024-13-01"))),
        422,
        "bad_csv",
        3,
        "created_at",
    ),
    Case(
        "timestamp_words",
        "created_at: free text",
        _const(csv(GOOD, row(3, created_at="not a date"))),
        422,
        "bad_csv",
        3,
        "created_at",
    ),
    Case(
        "bad_boolean",
        "is_active: maybe",
        _const(csv(GOOD, row(3, is_active="maybe"))),
        422,
        "bad_csv",
        3,
        "is_active",
    ),
    Case(
        "bad_double",
        "score: 1.2.3",
        _const(csv(GOOD, row(3, score="1.2.3"))),
        422,
        "bad_csv",
        3,
        "score",
    ),
    Case(
        "double_overflow",
        "score: 1e400",
        _const(csv(GOOD, row(3, score="1e400"))),
        422,
        "bad_csv",
        3,
        "score",
    ),
    # -- encoding ---------------------------------------------------------------------
    Case(
        "invalid_utf8",
        "a 0xff byte in a field",
        _const(csv(GOOD, row(3, name="n\udcff"))),
        400,
        "bad_csv",
        3,
    ),
    Case(
        "nul_byte",
        "a NUL byte in a field",
        _const(csv(GOOD, row(3, name="n\x00"))),
        400,
        "bad_csv",
        3,
    ),
    Case(
        "invalid_utf8_header",
        "a 0xff byte in the header",
        _const(b"id\xff" + csv(GOOD)[2:]),
        400,
        "bad_encoding",
        1,
    ),
    Case(
        "nul_header",
        "a NUL byte in the header",
        _const(b"id\x00" + csv(GOOD)[2:]),
        400,
        "bad_header",
        1,
    ),
    Case(
        "utf16",
        "UTF-16 with its BOM",
        _const(b"\xff\xfe" + (HEADER + "\n" + GOOD).encode("utf-16-le")),
        400,
        "bad_encoding",
        1,
    ),
    Case(
        "bom",
        "a UTF-8 BOM before the header",
        _const(b"\xef\xbb\xbf" + csv(GOOD)),
        201,
        rows=((1, "n", "c"),),
    ),
    # -- header -----------------------------------------------------------------------
    Case(
        "header_misspelled",
        "nmae for name",
        _const(csv(GOOD, header=HEADER.replace("name", "nmae"))),
        400,
        "bad_header",
        1,
        "nmae",
    ),
    Case(
        "header_duplicated",
        "a column twice",
        _const(csv(GOOD[:-1] + ",1\n", header=HEADER + ",id")),
        400,
        "bad_header",
        1,
        "id",
    ),
    Case(
        "header_missing_columns",
        "no score, no category",
        _const(csv("1," + U + ",n,e,1,1,2024-01-01,t\n", header=HEADER.rsplit(",", 2)[0])),
        400,
        "bad_header",
        1,
        "score",
    ),
    Case(
        "header_extra_column",
        "an unknown eleventh column",
        _const(csv(GOOD[:-1] + ",x\n", header=HEADER + ",extra")),
        400,
        "bad_header",
        1,
        "extra",
    ),
    Case("empty_body", "zero bytes", _const(b""), 400, "empty", 1),
    Case("blank_body", "only line breaks and spaces", _const(b"\n\r\n  \n"), 400, "empty", 1),
    Case("header_only", "a header and no rows (valid: zero rows)", _const(csv()), 201),
    # -- size and garbage -------------------------------------------------------------
    Case(
        "field_50mb",
        "one 50 MiB text field (stored whole)",
        field_50mb,
        201,
        rows=((1, "x" * (50 * 1024 * 1024), "c"),),
        big=True,
    ),
    Case("binary_garbage", "256 KiB of random bytes", garbage, 400, "bad_encoding", 1),
    Case(
        "garbage_after_header",
        "random bytes after a valid header",
        lambda: csv() + garbage(),
        400,
        "bad_csv",
        2,
    ),
    Case("long_header", "a 1 MiB header line", long_header_line, 400, "bad_header", 1, big=True),
    Case(
        "long_line",
        "a 16 MiB data line of two million fields",
        long_data_line,
        400,
        "bad_csv",
        3,
        big=True,
    ),
    # -- line endings -----------------------------------------------------------------
    Case(
        "mixed_line_endings",
        "LF, CRLF and CR line endings in one file (accepted)",
        _const(csv(row(1), row(2, eol="\r\n"), row(3, eol="\r"), row(4))),
        201,
        rows=((1, "n", "c"), (2, "n", "c"), (3, "n", "c"), (4, "n", "c")),
    ),
    Case(
        "crlf_quoted_breaks",
        "CRLF file with LF and CR inside quoted fields (kept verbatim)",
        _const(
            csv(row(1, name='"a\nb"', eol="\r\n"), row(2, name='"c\rd"', eol="\r\n"), eol="\r\n")
        ),
        201,
        rows=((1, "a\nb", "c"), (2, "c\rd", "c")),
    ),
    Case(
        "bom_crlf",
        "BOM and CRLF (a spreadsheet export)",
        _const(b"\xef\xbb\xbf" + csv(row(1, eol="\r\n"), eol="\r\n")),
        201,
        rows=((1, "n", "c"),),
    ),
    Case(
        "cr_only",
        "classic Mac CR line endings throughout (accepted)",
        _const(csv(row(1, eol="\r"), row(2, name='"x\ry"', eol="\r"), eol="\r")),
        201,
        rows=((1, "n", "c"), (2, "x\ry", "c")),
    ),
    # -- compressed and spreadsheet-shaped content ------------------------------------
    Case(
        "gzip_raw",
        "a gzip body sent as text/csv without Content-Encoding",
        _gzip_csv,
        415,
        "compressed_body",
    ),
    Case(
        "gzip_multipart",
        "a gzip file in the multipart file field",
        _gzip_csv,
        415,
        "compressed_body",
        send="multipart",
    ),
    Case(
        "content_encoding_gzip",
        "Content-Encoding: gzip (not supported)",
        _gzip_csv,
        415,
        "unsupported_encoding",
        headers={"Content-Encoding": "gzip"},
    ),
    Case(
        "formulas",
        "spreadsheet formulas (stored verbatim, never evaluated)",
        _formulas,
        201,
        rows=tuple((i, v, v) for i, v in enumerate(FORMULAS, 1)),
    ),
    # -- multipart --------------------------------------------------------------------
    Case(
        "multipart_ok",
        "a valid upload in the file field",
        _const(csv(GOOD, row(2))),
        201,
        send="multipart",
        rows=((1, "n", "c"), (2, "n", "c")),
    ),
    Case(
        "multipart_no_file",
        "a multipart body without the file field",
        _const(csv(GOOD)),
        400,
        "missing_file",
        send="multipart-nofile",
    ),
    Case(
        "multipart_two_files",
        "two file fields",
        _const(csv(GOOD)),
        400,
        "duplicate_file",
        send="multipart-two",
    ),
    Case(
        "multipart_bad_value",
        "a bad value inside the file field keeps its line",
        _const(csv(GOOD, row(3, amount="abc"))),
        422,
        "bad_csv",
        3,
        "amount",
        send="multipart",
    ),
]

BY_ID = {case.id: case for case in CASES}
assert len(BY_ID) == len(CASES)
