"""CSV → binary COPY payloads, vectorized: pyarrow reads, numpy encodes (pure logic, no database).

``binary.encode`` converts field by field in Python (about 3.6 s for the 100k-row reference
file). This module produces the same bytes column by column: pyarrow's CSV reader splits
the input into string columns, each column is checked against a strict pattern (a subset
of what PostgreSQL accepts, e.g. plain ``-123`` for integers, ``2024-05-01T12:30:00+02:00``
for timestamps), converted with numpy, and laid out as binary COPY fields; one
``binary_join_element_wise`` then joins each row's fields into its tuple.

Whenever the fast reading cannot be trusted to equal PostgreSQL's, the whole input goes
through ``binary.encode`` instead (the exact parser, with PostgreSQL's errors and line
numbers): a structural doubt (``\\r`` line endings, blank lines, ``\\.``, a quote that is
not a whole quoted field, a record spanning lines, a NUL), a value outside the strict
patterns (which includes every invalid value), or a column type without a fast encoder
(numeric without a typmod or wider than 18 digits, anything not listed in ``_ENCODERS``).
The fast path therefore never raises a user error of its own: errors come from the exact
parser, identical for every strategy.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from strategies import binary, pgtypes
from strategies.catalog import Column

Bytes = npt.NDArray[np.uint8]
#: One column of a batch → its binary COPY fields, as one or more binary arrays whose
#: element-wise concatenation is each row's field (length word included).
ColumnEncoder = Callable[[pa.Array], list[pa.Array]]

# Bytes per piece handed to pyarrow's CSV reader (about 3.5k reference rows). Measured
# on the 100k-row reference file, 5 interleaved rounds on the shared 2-core machine,
# median/min ms: 256 KiB 922/771, 512 KiB 679/597, 1 MiB 658/532, 4 MiB 575/548. Bigger
# pieces gain little and hold more: the traced Python peak for a 10 MB upload was
# 2.6 MB at 512 KiB and 5.1 MB at 1 MiB (tests/test_strategies_memory.py allows 5 MB).
BLOCK_BYTES = 512 * 1024
# Bytes per read while copying the upload to the spool and checking its structure
# (8 MiB reads put the traced peak of a 10 MB upload at 17.5 MB; 1 MiB at 2.6 MB).
SCAN_BYTES = 1024 * 1024

_NULL_WORD = np.frombuffer(binary.NULL, dtype=np.uint8)


class Fallback(Exception):
    """The fast reading is not trusted for this input: use the exact parser."""


# --- structure ------------------------------------------------------------------------


class StructureScan:
    """Checks, chunk by chunk, that pyarrow reads the input as PostgreSQL does.

    Rules (anything else is a doubt): ``\\n`` line endings only (``\\r`` only inside
    quoted fields), no blank line, no NUL,
    no ``\\.``, and every quote opens a field (after ``,``/newline/start), closes one
    (before ``,``/newline/end) or is a doubled quote inside one. Line breaks inside
    quoted fields are counted per record, so ``line_map`` gives PostgreSQL's line numbers
    (except in the first record, where PostgreSQL counts them differently: a doubt).
    """

    def __init__(self) -> None:
        self.ok = True
        #: Line breaks that end a record (the last record may end without one).
        self.records = 0
        self._prev = ord("\n")  # the byte before the first: a record starts here
        self._quotes = 0  # quotes seen so far (odd: inside a quoted field)
        self._spanning: list[npt.NDArray[np.int64]] = []  # record of each inner break

    def _doubt(self) -> None:
        self.ok = False

    def feed(self, chunk: bytes) -> None:
        if not self.ok or not chunk:
            return
        if b"\x00" in chunk or b"\\." in chunk or b"\n\n" in chunk:
            return self._doubt()
        data = np.frombuffer(chunk, dtype=np.uint8)
        if self._prev == ord("\n") and data[0] == ord("\n"):
            return self._doubt()  # a blank line across the chunk boundary, or at the start
        # The byte after a closing quote that ended the previous chunk.
        closed = self._prev == ord('"') and self._quotes % 2 == 0
        if closed and data[0] not in _AFTER_CLOSE:
            return self._doubt()
        quotes = np.flatnonzero(data == ord('"'))
        newlines = np.flatnonzero(data == ord("\n"))
        if quotes.size:
            ordinal = self._quotes + np.arange(quotes.size)
            opening = quotes[ordinal % 2 == 0]
            before = np.where(opening > 0, data[opening - 1], self._prev)
            # An opening quote follows a separator, or a quote: the one before an opening
            # quote has an odd ordinal, so it closed a field and the two are a doubled quote.
            if not np.isin(before, _AFTER_CLOSE).all():
                return self._doubt()
            after = quotes[ordinal % 2 == 1] + 1
            if not np.isin(data[after[after < data.size]], _AFTER_CLOSE).all():
                return self._doubt()
            inner = (self._quotes + np.searchsorted(quotes, newlines)) % 2 == 1
        else:
            inner = np.full(newlines.size, self._quotes % 2 == 1)
        if b"\r" in chunk and not self._returns_inside(data, quotes, newlines, inner):
            return self._doubt()
        if inner.any():
            ending = ~inner
            record = self.records + np.cumsum(ending) - ending
            spanning = record[inner]
            if spanning[0] == 0:
                return self._doubt()
            self._spanning.append(spanning)
            self.records += int(ending.sum())
        else:
            self.records += int(newlines.size)
        self._quotes += int(quotes.size)
        self._prev = int(data[-1])

    def _returns_inside(
        self,
        data: Bytes,
        quotes: npt.NDArray[np.intp],
        newlines: npt.NDArray[np.intp],
        inner: npt.NDArray[np.bool_],
    ) -> bool:
        """``\\r`` only inside quoted fields, and not in the first record (where
        PostgreSQL, not yet knowing the line ending, would count it as a line)."""
        returns = np.flatnonzero(data == ord("\r"))
        if ((self._quotes + np.searchsorted(quotes, returns)) % 2 == 0).any():
            return False
        endings_before = np.searchsorted(newlines[~inner], returns)
        return bool(self.records > 0 or (endings_before > 0).all())

    def finish(self) -> bool:
        """True when the whole input passed; also rejects an unterminated quote."""
        return self.ok and self._quotes % 2 == 0

    def line_map(self) -> binary.LineMap:
        """Row → PostgreSQL's line (a record is numbered by its last physical line)."""
        line_map = binary.LineMap()
        if self._spanning:
            rows, extra = np.unique(np.concatenate(self._spanning), return_counts=True)
            for row, shift in zip(rows.tolist(), np.cumsum(extra).tolist(), strict=True):
                line_map.note(row, row + 2 + shift)
        return line_map


_AFTER_CLOSE = np.array([ord(","), ord("\n"), ord('"')], dtype=np.uint8)


# --- columns ----------------------------------------------------------------------------


def _strings(arr: pa.Array) -> tuple[npt.NDArray[np.int64], Bytes]:
    """A string array's offsets (rebased to 0) and value bytes."""
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else _EMPTY
    start, end = int(offsets[0]), int(offsets[-1])
    return offsets.astype(np.int64) - start, data[start:end]


_EMPTY: Bytes = np.zeros(0, dtype=np.uint8)


def _check(arr: pa.Array, pattern: str) -> None:
    """Every non-null value matches ``pattern`` (RE2, anchored), or ``Fallback``."""
    if arr.null_count == len(arr):
        return
    matched = pc.match_substring_regex(arr, pattern)
    if not pc.all(pc.fill_null(matched, True)).as_py():
        raise Fallback


def _valid(arr: pa.Array) -> npt.NDArray[np.bool_] | None:
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _binary(offsets: npt.NDArray[np.int64], data: Bytes) -> pa.Array:
    return pa.Array.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _fixed(values: Bytes, valid: npt.NDArray[np.bool_] | None) -> pa.Array:
    """Fields of ``k`` bytes each (``values`` is ``(n, k)`` big-endian): length word + value."""
    n, k = values.shape
    matrix = np.empty((n, 4 + k), dtype=np.uint8)
    matrix[:, :4] = np.frombuffer(struct.pack(">i", k), dtype=np.uint8)
    matrix[:, 4:] = values
    if valid is None:
        offsets = np.arange(0, (n + 1) * (4 + k), 4 + k, dtype=np.int64)
        return _binary(offsets, matrix.reshape(-1))
    matrix[~valid, :4] = _NULL_WORD
    keep = np.ones((n, 4 + k), dtype=np.bool_)
    keep[~valid, 4:] = False
    return _select(matrix, keep)


def _select(matrix: Bytes, keep: npt.NDArray[np.bool_]) -> pa.Array:
    """Row ``i``'s field is ``matrix[i][keep[i]]``."""
    lengths = keep.sum(axis=1, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _binary(offsets, matrix[keep])


def _be(values: npt.NDArray[np.generic], dtype: str) -> Bytes:
    """``(n, itemsize)`` big-endian bytes of ``values``."""
    arr = np.ascontiguousarray(values.astype(dtype))
    return arr.view(np.uint8).reshape(len(arr), -1)


def _integers(lo: int, hi: int, dtype: str) -> ColumnEncoder:
    # Arrow's string→int64 cast reads optionally signed decimal digits and refuses
    # anything else (spaces, underscores, 0x…, overflow): a subset of PostgreSQL's forms,
    # read to the same value. Regex check + cast: 10.9 ms median (4.5 min) per 100k
    # values; the cast alone 1.3 ms (0.9) — 7 interleaved rounds, shared 2-core machine.
    def encode(arr: pa.Array) -> list[pa.Array]:
        try:
            values = pc.cast(pc.fill_null(arr, "0"), pa.int64()).to_numpy()
        except pa.ArrowInvalid as exc:
            raise Fallback from exc
        if values.size and (values.min() < lo or values.max() > hi):
            raise Fallback
        return [_fixed(_be(values, dtype), _valid(arr))]

    return encode


_FLOAT_PATTERN = r"^-?[0-9]{1,300}(\.[0-9]{1,300})?$"


def _floats(single: bool) -> ColumnEncoder:
    # No exponent: no overflow or underflow in float8. Arrow's string→double cast and
    # Python's float() both round correctly, so they agree; float4 goes through the
    # double first, as pgtypes does.
    def encode(arr: pa.Array) -> list[pa.Array]:
        _check(arr, _FLOAT_PATTERN)
        values = pc.cast(pc.fill_null(arr, "0"), pa.float64()).to_numpy()
        if single:
            narrowed = values.astype(np.float32)
            if not np.isfinite(narrowed).all() or ((narrowed == 0) & (values != 0)).any():
                raise Fallback
            return [_fixed(_be(narrowed, ">f4"), _valid(arr))]
        return [_fixed(_be(values, ">f8"), _valid(arr))]

    return encode


_TRUE = [w for w, v in pgtypes._BOOL_WORDS.items() if v]
_BOOLS = pa.array(list(pgtypes._BOOL_WORDS))


def _booleans(arr: pa.Array) -> list[pa.Array]:
    if not pc.all(pc.fill_null(pc.is_in(arr, value_set=_BOOLS), True)).as_py():
        raise Fallback
    values = pc.fill_null(pc.is_in(arr, value_set=pa.array(_TRUE)), False).to_numpy(
        zero_copy_only=False
    )
    return [_fixed(values.astype(np.uint8).reshape(-1, 1), _valid(arr))]


_HEX = np.full(256, 0, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"abcdef"):
    _HEX[ord(chr(_c).upper())] = 10 + _i
_IS_HEX = np.zeros(256, dtype=np.bool_)
_IS_HEX[list(b"0123456789abcdefABCDEF")] = True
_UUID_DASH_COLUMNS = np.array([8, 13, 18, 23])
_UUID_HEX_COLUMNS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _uuids(arr: pa.Array) -> list[pa.Array]:
    """The canonical 8-4-4-4-12 form, checked on the bytes: a regex check alone cost
    22 ms median (10.5 min) per 100k values, this whole encoder 56 ms (40 min)."""
    filled = pc.fill_null(arr, "00000000-0000-0000-0000-000000000000")
    offsets, data = _strings(filled)
    if data.size != 36 * len(arr) or (np.diff(offsets) != 36).any():
        raise Fallback
    text = data.reshape(-1, 36)
    if (text[:, _UUID_DASH_COLUMNS] != ord("-")).any():
        raise Fallback
    hex_text = text[:, _UUID_HEX_COLUMNS]
    if not _IS_HEX[hex_text].all():
        raise Fallback
    nibbles = _HEX[hex_text]
    values = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).astype(np.uint8)
    return [_fixed(values, _valid(arr))]


def _text(arr: pa.Array) -> list[pa.Array]:
    """Length word, then the UTF-8 bytes as they are (pyarrow checked the encoding)."""
    offsets, _ = _strings(arr)
    lengths = np.diff(offsets).astype(np.int32)
    valid = _valid(arr)
    if valid is not None:
        lengths[~valid] = -1
    words = _binary(np.arange(0, 4 * (len(arr) + 1), 4, dtype=np.int64), _be(lengths, ">i4"))
    return [words, pc.cast(pc.fill_null(arr, ""), pa.large_binary())]


def _numeric(precision: int, scale: int) -> ColumnEncoder:
    """numeric(p,s) with p ≤ 18: values with at most p-s integer and s fraction digits.

    Such a value needs no rounding, and ``binary._numeric`` lays it out with dscale = s.
    """
    frac_groups = -(-scale // 4)
    shift = 4 * frac_groups - scale
    groups = -(-(precision + shift) // 4)
    whole = precision - scale
    if scale:
        pattern = rf"^-?[0-9]{{1,{whole}}}(\.[0-9]{{1,{scale}}})?$"
    else:
        pattern = rf"^-?[0-9]{{1,{whole}}}$"
    powers = 10000 ** np.arange(groups - 1, -1, -1, dtype=np.int64)

    def encode(arr: pa.Array) -> list[pa.Array]:
        _check(arr, pattern)
        n = len(arr)
        # Arrow's decimal cast of a checked value is exact (it only pads the fraction).
        # Per 100k values (median/min of 7 interleaved rounds): extract_regex + int
        # casts 43/17 ms, this cast 15/4.8 ms.
        decimals = pc.cast(pc.fill_null(arr, "0"), pa.decimal128(precision, scale))
        words = np.frombuffer(decimals.buffers()[1], dtype=np.int64)
        signed = words[2 * decimals.offset : 2 * (decimals.offset + n) : 2]  # low words
        negative = signed < 0
        unscaled = np.abs(signed)
        magnitude = unscaled * 10**shift
        digits = (magnitude[:, None] // powers[None, :]) % 10000
        nonzero = digits != 0
        any_digit = nonzero.any(axis=1)
        first = np.where(any_digit, nonzero.argmax(axis=1), groups)
        last = np.where(any_digit, groups - nonzero[:, ::-1].argmax(axis=1), groups)
        ndigits = last - first
        weight = np.where(any_digit, groups - first - frac_groups - 1, 0)
        sign = np.where(negative & any_digit, 0x4000, 0)
        matrix = np.empty((n, 12 + 2 * groups), dtype=np.uint8)
        matrix[:, 0:4] = _be(8 + 2 * ndigits, ">i4")
        matrix[:, 4:6] = _be(ndigits, ">i2")
        matrix[:, 6:8] = _be(weight, ">i2")
        matrix[:, 8:10] = _be(sign, ">u2")
        matrix[:, 10:12] = np.frombuffer(struct.pack(">h", scale), dtype=np.uint8)
        matrix[:, 12:] = _be(digits, ">i2").reshape(n, 2 * groups)
        column = np.arange(groups)
        keep_groups = (column[None, :] >= first[:, None]) & (column[None, :] < last[:, None])
        keep = np.empty((n, 12 + 2 * groups), dtype=np.bool_)
        keep[:, :12] = True
        keep[:, 12:] = np.repeat(keep_groups, 2, axis=1)
        valid = _valid(arr)
        if valid is not None:
            matrix[~valid, :4] = _NULL_WORD
            keep[~valid, 4:] = False
        return [_select(matrix, keep)]

    return encode


_DATE = r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
_TIME = r"[T ](?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]{1,6}))?"
_ZONE = r"(?:(?P<z>Z)|(?P<zs>[+-])(?P<zh>[0-9]{2})(?::(?P<zm>[0-9]{2}))?)?"
_TIMESTAMP_PATTERN = f"^{_DATE}(?:{_TIME})?{_ZONE}$"
_DATE_PATTERN = f"^{_DATE}$"
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _ints(parts: pa.StructArray, name: str, pad: int = 0) -> npt.NDArray[np.int64]:
    """An extracted group as integers; an absent group is 0."""
    field = parts.field(name)
    if pad:
        field = pc.utf8_rpad(field, pad, "0")
    field = pc.if_else(pc.equal(field, ""), "0", field)
    return np.asarray(pc.cast(field, pa.int64()).to_numpy(), dtype=np.int64)


_DIGIT = np.zeros(256, dtype=np.bool_)
_DIGIT[list(b"0123456789")] = True
_TIMESTAMP_RE = re.compile(_TIMESTAMP_PATTERN)


def _number(text: Bytes, start: int, end: int) -> npt.NDArray[np.int64]:
    """The decimal number in columns ``start:end`` of a ``(n, width)`` byte matrix."""
    value = np.zeros(len(text), dtype=np.int64)
    for column in range(start, end):
        value = value * 10 + (text[:, column].astype(np.int64) - ord("0"))
    return value


def _uniform_parts(arr: pa.Array) -> dict[str, npt.NDArray[np.int64]] | None:
    """Timestamp fields read by position when every value has the first one's layout.

    The first value is checked with the strict regex; every other value must have its
    length, a digit wherever it has one, the same bytes elsewhere (either sign in the
    zone). The values then all match the regex too. Per 100k values (7 interleaved
    rounds, shared 2-core machine, median/min): ``extract_regex`` and casts 211/124 ms,
    reading by position 33/17 ms.
    """
    offsets, data = _strings(arr)
    if len(arr) == 0:
        return None
    width = int(offsets[1] - offsets[0])
    if data.size != width * len(arr) or (np.diff(offsets) != width).any():
        return None
    text = data.reshape(-1, width)
    m = _TIMESTAMP_RE.fullmatch(bytes(text[0]).decode("ascii", "replace"))
    if m is None:
        return None
    first = text[0]
    digits = _DIGIT[first]
    literal = ~digits
    sign_at = m.start("zs")
    if sign_at >= 0:
        literal[sign_at] = False
        if not np.isin(text[:, sign_at], (ord("+"), ord("-"))).all():
            return None
    if not _DIGIT[text[:, digits]].all() or (text[:, literal] != first[literal]).any():
        return None
    parts = {}
    for name in ("y", "mo", "d", "h", "mi", "s", "f", "zh", "zm"):
        start, end = m.span(name)
        if start < 0:
            parts[name] = np.zeros(len(arr), dtype=np.int64)
        else:
            scale = 10 ** (6 - (end - start)) if name == "f" else 1
            parts[name] = _number(text, start, end) * scale
    parts["negative"] = (
        (text[:, sign_at] == ord("-")).astype(np.int64)
        if sign_at >= 0
        else np.zeros(len(arr), dtype=np.int64)
    )
    return parts


def _regex_parts(arr: pa.Array) -> dict[str, npt.NDArray[np.int64]]:
    _check(arr, _TIMESTAMP_PATTERN)
    parts = pc.extract_regex(arr, _TIMESTAMP_PATTERN)
    fields = {name: _ints(parts, name) for name in ("y", "mo", "d", "h", "mi", "s", "zh", "zm")}
    fields["f"] = _ints(parts, "f", pad=6)
    fields["negative"] = np.asarray(
        pc.equal(parts.field("zs"), "-").to_numpy(zero_copy_only=False), dtype=np.int64
    )
    return fields


def _civil_days(
    year: npt.NDArray[np.int64], month: npt.NDArray[np.int64], day: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Days since 2000-01-01; a date PostgreSQL would refuse (or year 0) is a Fallback."""
    if (year == 0).any() or ((month < 1) | (month > 12)).any():
        raise Fallback
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    dim = _MONTH_DAYS[month] + ((month == 2) & leap)
    if ((day < 1) | (day > dim)).any():
        raise Fallback
    # pgtypes.days_from_civil, vectorized.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return np.asarray(era * 146097 + doe - pgtypes._PG_EPOCH_DAYS, dtype=np.int64)


def _timestamps(with_zone: bool) -> ColumnEncoder:
    def encode(arr: pa.Array) -> list[pa.Array]:
        filled = pc.fill_null(arr, "2000-01-01")
        p = _uniform_parts(filled) if arr.null_count == 0 else None
        if p is None:
            p = _regex_parts(filled)
        days = _civil_days(p["y"], p["mo"], p["d"])
        hour, minute, second = p["h"], p["mi"], p["s"]
        # 24:00:00 and leap seconds are valid in PostgreSQL: left to the exact parser.
        if (hour > 23).any() or (minute > 59).any() or (second > 59).any():
            raise Fallback
        usecs = (
            days * pgtypes.USECS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + p["f"]
        )
        if with_zone:
            if (p["zh"] > 15).any() or (p["zm"] > 59).any():
                raise Fallback
            offset = p["zh"] * 3600 + p["zm"] * 60
            usecs -= np.where(p["negative"] == 1, -offset, offset) * 1_000_000
        return [_fixed(_be(usecs, ">i8"), _valid(arr))]

    return encode


def _dates(arr: pa.Array) -> list[pa.Array]:
    _check(arr, _DATE_PATTERN)
    parts = pc.extract_regex(pc.fill_null(arr, "2000-01-01"), _DATE_PATTERN)
    days = _civil_days(_ints(parts, "y"), _ints(parts, "mo"), _ints(parts, "d"))
    return [_fixed(_be(days, ">i4"), _valid(arr))]


def column_encoder(column: Column) -> ColumnEncoder | None:
    """The vectorized encoder for ``column``, or None when only the exact parser will do."""
    t = pgtypes
    oid = column.type_oid
    simple: dict[int, ColumnEncoder] = {
        t.INT2: _integers(-(2**15), 2**15 - 1, ">i2"),
        t.INT4: _integers(t.INT32_MIN, t.INT32_MAX, ">i4"),
        t.INT8: _integers(t.INT64_MIN, t.INT64_MAX, ">i8"),
        t.FLOAT4: _floats(single=True),
        t.FLOAT8: _floats(single=False),
        t.BOOL: _booleans,
        t.UUID: _uuids,
        t.TEXT: _text,
        t.VARCHAR: _text,
        t.BPCHAR: _text,
        t.TIMESTAMPTZ: _timestamps(with_zone=True),
        t.TIMESTAMP: _timestamps(with_zone=False),
        t.DATE: _dates,
    }
    if oid in simple:
        return simple[oid]
    if oid == t.NUMERIC:
        typmod = t._TYPMOD.fullmatch(column.type_name.replace(" ", ""))
        if typmod:
            precision, scale = int(typmod[1]), int(typmod[2])
            shift = 4 * -(-scale // 4) - scale if scale >= 0 else 0
            if 0 <= scale < precision and precision + shift <= 18:
                return _numeric(precision, scale)
    return None


# --- rows ------------------------------------------------------------------------------


def encode_batch(batch: pa.RecordBatch, encoders: Sequence[ColumnEncoder]) -> pa.Array:
    """One binary array of whole tuples (field count, then each field) for a batch."""
    n = batch.num_rows
    count = _binary(
        np.arange(0, 2 * (n + 1), 2, dtype=np.int64),
        np.tile(np.frombuffer(struct.pack(">h", len(encoders)), dtype=np.uint8), n),
    )
    pieces = [count]
    for i, encode in enumerate(encoders):
        pieces.extend(encode(batch.column(i)))
    return pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.large_binary()))


def read_piece(piece: bytes, names: list[str]) -> pa.Table:
    """One piece of whole records as a table of strings, with the project's NULL rule
    (unquoted empty = NULL, ``""`` = empty string); also arrow-adbc's reader."""
    return pacsv.read_csv(
        pa.py_buffer(piece),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )


def pieces(raw: BinaryIO) -> Iterator[bytes]:
    """The scanned spool in about ``BLOCK_BYTES`` pieces, each cut after a whole record.

    pyarrow's own streaming reader reads ahead through the whole file (as Python bytes,
    for a Python file object); cutting the pieces here keeps memory at one piece.
    """
    carry = b""
    quotes = 0  # quotes before ``carry`` in the current record: always even
    while chunk := raw.read(BLOCK_BYTES):
        data = carry + chunk
        view = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(view == ord("\n"))
        if newlines.size == 0:
            carry = data
            continue
        quote_pos = np.flatnonzero(view == ord('"'))
        ending = (quotes + np.searchsorted(quote_pos, newlines)) % 2 == 0
        if not ending.any():
            carry = data
            continue
        cut = int(newlines[ending][-1]) + 1
        yield data[:cut]
        carry = data[cut:]
    if carry:
        yield carry


def spool_and_scan(source: BinaryIO, raw: BinaryIO) -> StructureScan:
    """Copy the upload (after its header) to ``raw`` while checking its structure."""
    scan = StructureScan()
    while chunk := source.read(SCAN_BYTES):
        raw.write(chunk)
        scan.feed(chunk)
    raw.seek(0)
    return scan


def encode_fast(
    raw: BinaryIO, columns: Sequence[Column], sinks: Sequence[BinaryIO], scan: StructureScan
) -> binary.Encoded:
    """The fast path over a scanned spool; ``Fallback`` on any doubt (sinks then dirty)."""
    encoders = [column_encoder(c) for c in columns]
    ready = [e for e in encoders if e is not None]
    if len(ready) != len(encoders):
        raise Fallback
    for sink in sinks:
        sink.write(binary.SIGNATURE)
    per_sink = [0] * len(sinks)
    raw.seek(0, 2)
    empty = raw.tell() == 0
    raw.seek(0)
    row = 0
    if not empty:
        try:
            names = [c.name for c in columns]
            for piece in pieces(raw):
                for batch in read_piece(piece, names).to_batches():
                    if batch.num_rows:
                        _deal(encode_batch(batch, ready), row, sinks, per_sink)
                        row += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise Fallback from exc
    # One line break per record (the last may lack one): no record spans lines.
    if row not in (scan.records, scan.records + 1):
        raise Fallback
    for sink in sinks:
        sink.write(binary.TRAILER)
    return binary.Encoded(per_sink, scan.line_map())


def _deal(tuples: pa.Array, first_row: int, sinks: Sequence[BinaryIO], per_sink: list[int]) -> None:
    """Write rows to sinks in ``binary.BLOCK_ROWS`` blocks, as ``binary.encode`` deals them."""
    buffers = tuples.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32 if tuples.type == pa.binary() else np.int64)
    offsets = offsets[tuples.offset : tuples.offset + len(tuples) + 1]
    data = memoryview(buffers[2])
    n = len(tuples)
    local = 0
    while local < n:
        row = first_row + local
        block = row // binary.BLOCK_ROWS
        end = min(n, (block + 1) * binary.BLOCK_ROWS - first_row)
        sink = block % len(sinks)
        sinks[sink].write(data[int(offsets[local]) : int(offsets[end])])
        per_sink[sink] += end - local
        local = end


def encode(
    source: BinaryIO, columns: Sequence[Column], sinks: Sequence[BinaryIO]
) -> binary.Encoded:
    """Like ``binary.encode`` (same bytes, same errors), vectorized when the input allows.

    The input is spooled (``spool``) so the exact parser can re-read it after a doubt.
    """
    from strategies import spool

    with spool.spooled() as raw:
        scan = spool_and_scan(source, raw)
        if scan.finish():
            try:
                return encode_fast(raw, columns, sinks, scan)
            except Fallback:
                for sink in sinks:
                    sink.seek(0)
                    sink.truncate()
                raw.seek(0)
        return binary.encode(raw, columns, sinks)
