"""PostgreSQL's text input rules, reproduced in Python (pure logic, no I/O).

Client-side strategies parse CSV fields themselves and must land exactly the values that
``COPY … (FORMAT csv)`` would. Each converter takes the field text (never NULL) and returns
the Python value, or raises ``ValueError`` with PostgreSQL's short reason. Values:

* int2/int4/int8 → ``int``; numeric → ``Decimal`` (typmod applied: rounded half away from
  zero, overflow refused); float4/float8 → ``float``; bool → ``bool``; uuid → 16 ``bytes``;
  timestamp/timestamptz → ``int`` microseconds since 2000-01-01 00:00 UTC (PostgreSQL's
  epoch; ±infinity as the int64 extremes); date → ``int`` days since 2000-01-01;
  text/varchar/bpchar → ``str``.

Dates and times: the ISO 8601 forms (``2024-05-01``, ``2024-05-01 12:30``,
``2024-05-01T12:30:45.123456+05:30``, ``…Z``, ``… UTC``), ``epoch`` and ``±infinity``.
A value without an offset is read in UTC: every strategy pins the loading session's
``TimeZone`` to UTC (``SESSION_SETTINGS``), so the server reads it the same way. Other
spellings PostgreSQL also accepts (``May 1 2024``, zone names, ``now``) are refused
with a clear error rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal

from lab.errors import LabError
from strategies.catalog import Column

#: Settings every strategy applies to its loading session (``SET LOCAL`` or connect
#: options), so the server's text parsing and these converters agree.
SESSION_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres"}

Converter = Callable[[str], object]

# Type OIDs (pg_type.oid) of the supported column types.
BOOL, INT8, INT2, INT4, TEXT, FLOAT4, FLOAT8 = 16, 20, 21, 23, 25, 700, 701
BPCHAR, VARCHAR, DATE, TIMESTAMP, TIMESTAMPTZ = 1042, 1043, 1082, 1114, 1184
NUMERIC, UUID = 1700, 2950

TYPE_NAMES = {
    BOOL: "boolean",
    INT2: "smallint",
    INT4: "integer",
    INT8: "bigint",
    TEXT: "text",
    FLOAT4: "real",
    FLOAT8: "double precision",
    BPCHAR: "character",
    VARCHAR: "character varying",
    DATE: "date",
    TIMESTAMP: "timestamp without time zone",
    TIMESTAMPTZ: "timestamp with time zone",
    NUMERIC: "numeric",
    UUID: "uuid",
}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# PostgreSQL's isspace(): what its input functions skip around a value.
_WS = " \t\n\r\v\f"


def _bad_syntax(type_name: str, text: str) -> ValueError:
    return ValueError(f'invalid input syntax for type {type_name}: "{text[:60]}"')


# --- integers: decimal with single underscores between digits, or 0x/0o/0b (PG 16+).
_INT = re.compile(
    r"([+-]?)(?:(0[xX](?:_?[0-9a-fA-F])+)|(0[oO](?:_?[0-7])+)|(0[bB](?:_?[01])+)|([0-9](?:_?[0-9])*))"
)


def _parse_int(text: str, type_name: str, lo: int, hi: int) -> int:
    if text.isdigit() and text.isascii():  # the common case: plain decimal digits
        value = int(text)
        if value > hi:
            raise ValueError(f'value "{text[:60]}" is out of range for type {type_name}')
        return value
    m = _INT.fullmatch(text.strip(_WS))
    if m is None:
        raise _bad_syntax(type_name, text)
    sign, hexa, octa, bina, dec = m.groups()
    if dec is not None:
        value = int(dec.replace("_", ""))
    else:
        body, base = (hexa, 16) if hexa else (octa, 8) if octa else (bina, 2)
        value = int(body[2:].replace("_", ""), base)
    if sign == "-":
        value = -value
    if not lo <= value <= hi:
        raise ValueError(f'value "{text[:60]}" is out of range for type {type_name}')
    return value


def int_converter(lo: int, hi: int, type_name: str) -> Converter:
    def convert(text: str) -> object:
        return _parse_int(text, type_name, lo, hi)

    return convert


# --- numeric
_NUMERIC = re.compile(
    r"[+-]?(?:[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?|\.[0-9](?:_?[0-9])*)(?:[eE][+-]?[0-9]+)?"
)
_NUMERIC_SPECIAL = {
    "nan": Decimal("NaN"),
    "infinity": Decimal("Infinity"),
    "+infinity": Decimal("Infinity"),
    "-infinity": Decimal("-Infinity"),
    "inf": Decimal("Infinity"),
    "+inf": Decimal("Infinity"),
    "-inf": Decimal("-Infinity"),
}
# Wide enough for any numeric PostgreSQL stores (131072 digits before the point).
DECIMAL_CONTEXT = Context(prec=140000, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999)
_TYPMOD = re.compile(r"numeric\((\d+),(-?\d+)\)")


def numeric_converter(type_name: str) -> Converter:
    """Numeric input; with a typmod ``numeric(p,s)`` round like PostgreSQL and check range."""
    m = _TYPMOD.fullmatch(type_name.replace(" ", ""))
    precision, scale = (int(m[1]), int(m[2])) if m else (None, None)
    quantum = Decimal(1).scaleb(-scale) if scale is not None else None

    def convert(text: str) -> object:
        stripped = text.strip(_WS)
        special = _NUMERIC_SPECIAL.get(stripped.lower())
        if special is not None:
            if precision is not None and special.is_infinite():
                raise ValueError("numeric field overflow")
            return special
        if _NUMERIC.fullmatch(stripped):
            value = Decimal(stripped.replace("_", ""))
        else:
            im = _INT.fullmatch(stripped)
            if im is None or im[5] is not None:
                raise _bad_syntax("numeric", text)
            value = Decimal(_parse_int(stripped, "numeric", -(10**1000), 10**1000))
        if value.adjusted() > 131072:
            raise ValueError("value overflows numeric format")
        if precision is None or quantum is None or scale is None:
            return value
        value = value.quantize(quantum, context=DECIMAL_CONTEXT)
        if value != 0 and value.adjusted() >= precision - scale:
            raise ValueError("numeric field overflow")
        return value

    return convert


# --- float4/float8: strtod's syntax plus PostgreSQL's spellings of the special values.
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEXFLOAT = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)
_FLOAT_SPECIAL = {
    "nan": float("nan"),
    "+nan": float("nan"),
    "-nan": float("nan"),
    "infinity": float("inf"),
    "+infinity": float("inf"),
    "-infinity": float("-inf"),
    "inf": float("inf"),
    "+inf": float("inf"),
    "-inf": float("-inf"),
}


def float_converter(type_name: str, single: bool) -> Converter:
    import struct

    def convert(text: str) -> object:
        stripped = text.strip(_WS)
        special = _FLOAT_SPECIAL.get(stripped.lower())
        if special is not None:
            return special
        if _FLOAT.fullmatch(stripped):
            value = float(stripped)
            mantissa = stripped.lstrip("+-").split("e")[0].split("E")[0]
        elif _HEXFLOAT.fullmatch(stripped):
            try:
                value = float.fromhex(stripped)
            except OverflowError:
                value = float("inf")
            mantissa = stripped.lstrip("+-")[2:].split("p")[0].split("P")[0]
        else:
            raise _bad_syntax(type_name, text)
        if single and value == value and abs(value) != float("inf"):
            try:
                value = struct.unpack("f", struct.pack("f", value))[0]
            except OverflowError:
                value = float("inf")
        underflow = value == 0 and any(c not in "0." for c in mantissa)
        if underflow or value in (float("inf"), float("-inf")):
            raise ValueError(f'"{text[:60]}" is out of range for type {type_name}')
        return value

    return convert


# --- boolean: any unique prefix of true/false/yes/no, on/off (two letters at least), 1/0.
_BOOL_WORDS: dict[str, bool] = {"1": True, "0": False, "on": True, "of": False, "off": False}
for _word, _value in (("true", True), ("yes", True), ("false", False), ("no", False)):
    _BOOL_WORDS.update({_word[:n]: _value for n in range(1, len(_word) + 1)})


def parse_bool(text: str) -> object:
    value = _BOOL_WORDS.get(text)
    if value is None:
        value = _BOOL_WORDS.get(text.strip(_WS).lower())
        if value is None:
            raise _bad_syntax("boolean", text)
    return value


# --- uuid: 32 hex digits, an optional '-' after any group of four, optional braces.
_UUID = re.compile(r"(\{)?([0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7})(\})?")


def parse_uuid(text: str) -> object:
    m = _UUID.fullmatch(text)
    if m is None or (m[1] is None) != (m[3] is None):
        raise _bad_syntax("uuid", text)
    return bytes.fromhex(m[2].replace("-", ""))


# --- dates and timestamps
_DATETIME = re.compile(
    r"(\d{4,})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt]|[ \t]+)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(\.\d*)?)?)?"
    r"[ \t]*(?:([Zz]|UTC|utc|GMT|gmt)|([+-])(\d{1,2})(?::?(\d{2})(?::?(\d{2}))?)?)?"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
USECS_PER_DAY = 86_400_000_000
# Days from 0000-03-01 to 2000-01-01 in the proleptic Gregorian calendar.
_PG_EPOCH_DAYS = 730425
TIMESTAMP_INFINITY, TIMESTAMP_MINUS_INFINITY = INT64_MAX, INT64_MIN
DATE_INFINITY, DATE_MINUS_INFINITY = INT32_MAX, INT32_MIN
# The supported range ends where PostgreSQL's does: 294276-12-31 (timestamps) and
# 5874897-12-31 (dates); the BC side is outside the ISO forms accepted here.
_MAX_TIMESTAMP_YEAR = 294276


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 2000-01-01 (Howard Hinnant's algorithm, any Gregorian year)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - _PG_EPOCH_DAYS


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _parse_datetime(text: str, type_name: str, with_zone: bool, date_only: bool) -> int | None:
    """Microseconds since the PG epoch, or None for a plain date (days handled by caller)."""
    stripped = text.strip(_WS)
    m = _DATETIME.fullmatch(stripped)
    if m is None:
        raise ValueError(
            f'unsupported {type_name} value "{text[:60]}" '
            "(use ISO 8601, e.g. 2024-05-01 12:30:00+02)"
        )
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if year == 0 or not 1 <= month <= 12:
        raise ValueError(f'date/time field value out of range: "{text[:60]}"')
    dim = 29 if month == 2 and _leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= dim:
        raise ValueError(f'date/time field value out of range: "{text[:60]}"')
    hour = int(m[4]) if m[4] else 0
    minute = int(m[5]) if m[5] else 0
    second = int(m[6]) if m[6] else 0
    # PostgreSQL: fsec = rint(strtod(".ddd") * 1e6); Python's round() is also half-even.
    fsec = round(float(m[7]) * 1_000_000) if m[7] and m[7] != "." else 0
    if hour > 24 or minute > 59 or second > 60 or (hour == 24 and (minute or second or fsec)):
        raise ValueError(f'date/time field value out of range: "{text[:60]}"')
    offset = 0
    if m[9]:
        oh, om, os_ = int(m[10]), int(m[11] or 0), int(m[12] or 0)
        if oh > 15 or om > 59 or os_ > 59:
            raise ValueError(f'time zone displacement out of range: "{text[:60]}"')
        offset = (oh * 3600 + om * 60 + os_) * (-1 if m[9] == "-" else 1)
    if date_only:
        return days_from_civil(year, month, day)
    usecs = (
        days_from_civil(year, month, day) * USECS_PER_DAY
        + ((hour * 60 + minute) * 60 + second) * 1_000_000
        + fsec
    )
    if with_zone:
        usecs -= offset * 1_000_000
    if year > _MAX_TIMESTAMP_YEAR:
        raise ValueError(f'timestamp out of range: "{text[:60]}"')
    return usecs


_EPOCH_USECS = days_from_civil(1970, 1, 1) * USECS_PER_DAY


def timestamp_converter(type_name: str, with_zone: bool) -> Converter:
    def convert(text: str) -> object:
        word = text.strip(_WS).lower()
        if word in ("infinity", "+infinity"):
            return TIMESTAMP_INFINITY
        if word == "-infinity":
            return TIMESTAMP_MINUS_INFINITY
        if word == "epoch":
            return _EPOCH_USECS
        return _parse_datetime(text, type_name, with_zone, date_only=False)

    return convert


def parse_date(text: str) -> object:
    word = text.strip(_WS).lower()
    if word in ("infinity", "+infinity"):
        return DATE_INFINITY
    if word == "-infinity":
        return DATE_MINUS_INFINITY
    if word == "epoch":
        return days_from_civil(1970, 1, 1)
    return _parse_datetime(text, "date", with_zone=False, date_only=True)


def _text(text: str) -> object:
    return text


def converter(column: Column) -> Converter:
    """The text-input converter for ``column``; unsupported types are a clear LabError."""
    oid = column.type_oid
    if oid == INT2:
        return int_converter(-(2**15), 2**15 - 1, "smallint")
    if oid == INT4:
        return int_converter(INT32_MIN, INT32_MAX, "integer")
    if oid == INT8:
        return int_converter(INT64_MIN, INT64_MAX, "bigint")
    if oid == NUMERIC:
        return numeric_converter(column.type_name)
    if oid in (FLOAT4, FLOAT8):
        return float_converter(TYPE_NAMES[oid], single=oid == FLOAT4)
    if oid == BOOL:
        return parse_bool
    if oid == UUID:
        return parse_uuid
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        return timestamp_converter(TYPE_NAMES[oid], with_zone=oid == TIMESTAMPTZ)
    if oid == DATE:
        return parse_date
    if oid in (TEXT, VARCHAR, BPCHAR):
        return _text
    raise LabError(
        f"column {column.name!r} has type {column.type_name}, which this strategy cannot "
        "encode; use psycopg-text",
        code="unsupported_type",
        status=422,
        column=column.name,
    )
