"""Property tests: generated valid CSV round-trips identically through every strategy, and
any byte string gets a row count or the project's 4xx error — never anything else.

Example counts are modest (the suite runs on 2 shared cores); the numbers are in
docs/security.md.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from lab.config import Settings
from lab.errors import LabError
from service import create_app, intake
from service.db import close_db
from strategies.base import DirectConnector

ALL = strategies.names()
HEADER = "id,uuid,name,email,amount,quantity,created_at,is_active,score,category"
Conn = psycopg.Connection[tuple[object, ...]]
FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- generated valid rows ----------------------------------------------------------------

# Text with everything CSV must quote, plus 4-byte UTF-8; no NUL (PostgreSQL text cannot
# hold it) and no lone surrogates (not encodable).
TEXT = st.text(
    st.one_of(
        st.sampled_from(list(',"\r\n \t\\')),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=12,
)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TIMESTAMPS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=OFFSETS
)


@st.composite
def records(draw: st.DrawFn, id_: int) -> tuple[list[str], tuple[object, ...]]:
    """(CSV fields, the row PostgreSQL must hold)."""

    def text() -> tuple[str, str | None]:
        if draw(st.booleans()) and draw(st.booleans()):
            return "", None  # unquoted empty: NULL
        value = draw(TEXT)
        return '"' + value.replace('"', '""') + '"', value

    u = draw(st.uuids())
    name, name_v = text()
    email, email_v = text()
    category, category_v = text()
    cents = draw(st.integers(-(10**12) + 1, 10**12 - 1))
    amount = Decimal(cents).scaleb(-2)
    quantity = draw(st.integers(-(2**31), 2**31 - 1))
    ts = draw(TIMESTAMPS)
    active = draw(st.sampled_from([("t", True), ("false", False), ("", None)]))
    score = draw(st.floats(allow_nan=True, allow_infinity=True, width=64))
    score_csv = "NaN" if math.isnan(score) else repr(score).replace("inf", "Infinity")
    fields = [
        str(id_),
        str(u),
        name,
        email,
        str(amount),
        str(quantity),
        ts.isoformat(),
        active[0],
        score_csv,
        category,
    ]
    value = (
        id_,
        u,
        name_v,
        email_v,
        amount,
        quantity,
        ts.astimezone(UTC),
        active[1],
        repr(score),
        category_v,
    )
    return fields, value


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, list[tuple[object, ...]]]:
    n = draw(st.integers(0, 6))
    rows = [draw(records(i)) for i in range(1, n + 1)]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = HEADER + eol + "".join(",".join(f) + eol for f, _ in rows)
    return text.encode(), [v for _, v in rows]


def stored(conn: Conn) -> list[tuple[object, ...]]:
    out = []
    for row in conn.execute("SELECT * FROM ingest.records ORDER BY id").fetchall():
        fixed = list(row)
        assert isinstance(fixed[6], datetime)
        fixed[6] = fixed[6].astimezone(UTC)
        fixed[8] = repr(fixed[8])
        out.append(tuple(fixed))
    return out


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(doc=documents())
def test_generated_valid_csv_round_trips(name: str, db: DirectConnector, conn: Conn, doc: Any):
    data, want = doc
    conn.execute("TRUNCATE ingest.records")
    result = strategies.get(name).load(io.BytesIO(data), "records", db)
    assert result.rows == len(want)
    assert stored(conn) == want


# -- any bytes ---------------------------------------------------------------------------

VALID = (
    HEADER + "\n"
    '1,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,"a, ""b""",e,1.50,2,2024-01-01 00:00+02,t,1e3,c\n'
    '2,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,,"",-0.01,-7,2024-02-29,f,NaN,"x\ny"\n'
).encode()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid CSV with a few bytes inserted, deleted or replaced (quotes, commas, line
    breaks, NUL, invalid UTF-8, random bytes)."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(
            st.one_of(
                st.sampled_from([b'"', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3"]),
                st.binary(min_size=1, max_size=4),
            )
        )
        if op == "insert":
            data[at:at] = piece
        elif op == "delete":
            del data[at : at + len(piece)]
        else:
            data[at : at + len(piece)] = piece
    return bytes(data)


ANY_BYTES = st.one_of(st.binary(max_size=300), mutated())


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(data=ANY_BYTES)
def test_any_bytes_load_or_lab_error(name: str, db: DirectConnector, conn: Conn, data: bytes):
    conn.execute("TRUNCATE ingest.records")
    try:
        result = strategies.get(name).load(io.BytesIO(data), "records", db)
    except LabError as exc:
        assert 400 <= exc.status < 500
        assert exc.message
        count = conn.execute("SELECT count(*) FROM ingest.records").fetchone()
        assert count == (0,)
    else:
        count = conn.execute("SELECT count(*) FROM ingest.records").fetchone()
        assert count == (result.rows,)


@pytest.fixture(scope="module")
def app(db_url: str) -> Iterator[Flask]:
    app = create_app({"SETTINGS": Settings(database_url=db_url), "TESTING": True})
    yield app
    close_db(app)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=ANY_BYTES,
    strategy=st.sampled_from(ALL),
    as_multipart=st.booleans(),
)
def test_any_bytes_over_http_never_5xx(app: Flask, conn: Conn, data, strategy, as_multipart):
    conn.execute("TRUNCATE ingest.records")
    client = app.test_client()
    if as_multipart:
        response = client.post(
            f"/upload?strategy={strategy}",
            data={"file": (io.BytesIO(data), "d.csv")},
            content_type="multipart/form-data",
        )
    else:
        response = client.post(f"/upload?strategy={strategy}", data=data, content_type="text/csv")
    assert response.status_code in (201, 400, 413, 415, 422), response.get_data(as_text=True)
    if response.status_code != 201:
        body = response.get_json()
        assert set(body["error"]) == {"code", "message", "line", "column"}
        assert conn.execute("SELECT count(*) FROM ingest.records").fetchone() == (0,)


# -- the line-ending normalizer, against a plain reference ---------------------------------


def reference_normalize(data: bytes) -> bytes:
    """Character by character: unquoted CR, LF and CRLF become the first break's kind."""
    first = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=-1)
    eol = b"\r\n" if first >= 0 and data.startswith(b"\r\n", first) else b"\n"
    out = bytearray()
    quoted = False
    i = 0
    while i < len(data):
        c = data[i : i + 1]
        if c == b'"':
            quoted = not quoted
        elif not quoted and c in (b"\r", b"\n"):
            out += eol
            i += 2 if data.startswith(b"\r\n", i) else 1
            continue
        out += c
        i += 1
    return bytes(out)


class Trickle(io.RawIOBase):
    """A stream handing out at most ``step`` bytes per read (chunk boundaries anywhere)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        n = self._step if size is None or size < 0 else min(size, self._step)
        out, self._data = self._data[:n], self._data[n:]
        return out


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b",", b'"', b"\r", b"\n", b"\r\n", b"\xc3\xa9"])).map(
        b"".join
    ),
    step=st.integers(1, 9),
)
def test_line_endings_are_normalized_like_the_reference(data: bytes, step: int):
    if intake.compressed(data):
        return
    body = intake.csv_body(Trickle(data, step))  # type: ignore[arg-type]
    assert body.read() == reference_normalize(data)


@pytest.mark.parametrize("magic", [b"\x1f\x8b\x08", b"PK\x03\x04", b"BZh9", b"\xfd7zXZ\x00"])
def test_compressed_content_is_refused(magic: bytes):
    with pytest.raises(LabError) as info:
        intake.csv_body(Trickle(magic + b"rest", 1)).read()  # type: ignore[arg-type]
    assert (info.value.code, info.value.status) == ("compressed_body", 415)


def _parse(source: Any) -> object:
    from strategies import csvparse

    try:
        return list(csvparse.bodies(source))
    except LabError as exc:
        return (exc.code, exc.message, exc.line)


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([b"ab", b",", b'"', b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"\x00", b"\xff"])
    ).map(b"".join),
    step=st.integers(1, 7),
)
def test_csv_records_do_not_depend_on_read_sizes(data: bytes, step: int):
    """The parser's skip-ahead for unfinished records never changes what it yields."""
    assert _parse(Trickle(data, step)) == _parse(io.BytesIO(data))
