"""CSV records → typed values → PostgreSQL's binary COPY format (pure logic, no database).

``typed_rows`` applies ``pgtypes`` to the records of ``csvparse`` and turns a bad value
into a ``LabError`` at its line and column, checking fields in the server's order (extra
fields first, then each column left to right, a missing field where it is reached).
``encode`` writes ``COPY … (FORMAT binary)`` payloads: the 19-byte header, one tuple per
row (int16 field count, then int32 length + bytes per field, -1 for NULL) and the
trailer.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import BinaryIO

from lab.errors import LabError
from strategies import csvparse, pgtypes
from strategies.catalog import Column

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
NULL = struct.pack(">i", -1)

Encoder = Callable[[object], bytes]


_NUMERIC_CONTEXT = pgtypes.DECIMAL_CONTEXT


def _numeric(value: object) -> bytes:
    """numeric_send's layout: ndigits, weight, sign, dscale, then base-10000 digits."""
    assert isinstance(value, Decimal)
    if not value.is_finite():
        if value.is_nan():
            return struct.pack(">ihhHh", 8, 0, 0, 0xC000, 0)
        return struct.pack(">ihhHh", 8, 0, 0, 0xF000 if value < 0 else 0xD000, 0)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    frac_groups = -(-dscale // 4)
    # The magnitude as an integer of whole base-10000 groups, fraction included.
    n = int(abs(value).scaleb(frac_groups * 4, context=_NUMERIC_CONTEXT))
    groups: list[int] = []
    while n:
        n, group = divmod(n, 10000)
        groups.append(group)
    weight = len(groups) - frac_groups - 1
    groups.reverse()  # most significant first; leading zero groups cannot occur
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        return struct.pack(">ihhHh", 8, 0, 0, 0, dscale)
    count = len(groups)
    sign = 0x4000 if value < 0 else 0
    return struct.pack(f">ihhHh{count}h", 8 + 2 * count, count, weight, sign, dscale, *groups)


def _packer(fmt: str) -> Encoder:
    pack = struct.Struct(">i" + fmt).pack
    size = struct.calcsize(">" + fmt)

    def encode(value: object) -> bytes:
        return pack(size, value)

    return encode


def _text(value: object) -> bytes:
    assert isinstance(value, str)
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _uuid(value: object) -> bytes:
    assert isinstance(value, bytes)
    return b"\x00\x00\x00\x10" + value


def encoder(column: Column) -> Encoder:
    """The binary send format for one column's converted values."""
    t = pgtypes
    formats = {t.INT2: "h", t.INT4: "i", t.INT8: "q", t.FLOAT4: "f", t.FLOAT8: "d", t.BOOL: "?"}
    formats |= {t.TIMESTAMP: "q", t.TIMESTAMPTZ: "q", t.DATE: "i"}
    if column.type_oid in formats:
        return _packer(formats[column.type_oid])
    if column.type_oid == t.NUMERIC:
        return _numeric
    if column.type_oid == t.UUID:
        return _uuid
    pgtypes.converter(column)  # raises the LabError for unsupported types
    return _text


@dataclass
class LineMap:
    """Row index → the server's line number, stored only where the two drift apart."""

    rows: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def note(self, row: int, line: int) -> None:
        if not self.rows or line - row != self.lines[-1] - self.rows[-1]:
            self.rows.append(row)
            self.lines.append(line)

    def line(self, row: int) -> int:
        i = bisect.bisect_right(self.rows, row) - 1
        return row + 2 if i < 0 else self.lines[i] + row - self.rows[i]


def convert_row(
    line: int, fields: csvparse.Record, converters: Sequence[pgtypes.Converter], names: list[str]
) -> list[object]:
    """One record's values, or the LabError the server would raise for it."""
    width = len(names)
    if len(fields) > width:
        raise csvparse.bad_csv("extra data after last expected column", line)
    values: list[object] = []
    try:
        for convert, text in zip(converters, fields, strict=False):
            values.append(None if text is None else convert(text))
    except ValueError as exc:
        name = names[len(values)]
        raise LabError(str(exc), code="bad_csv", status=422, line=line, column=name) from None
    if len(fields) < width:
        missing = names[len(fields)]
        raise csvparse.bad_csv(f'missing data for column "{missing}"', line, missing)
    return values


def typed_rows(
    source: BinaryIO, columns: Sequence[Column], line_map: LineMap | None = None
) -> Iterator[list[object]]:
    """Converted values of each record of ``source`` (after the header), in header order."""
    converters = [pgtypes.converter(c) for c in columns]
    names = [c.name for c in columns]
    for row, (line, fields) in enumerate(csvparse.records(source)):
        if line_map is not None:
            line_map.note(row, line)
        yield convert_row(line, fields, converters, names)


FieldEncoder = Callable[[str | None], bytes]


def field_encoder(column: Column) -> FieldEncoder:
    """Field text (or None) straight to its binary COPY field: convert, then encode."""
    convert = pgtypes.converter(column)
    encode_value = encoder(column)
    if encode_value is _text:
        pack = struct.Struct(">i").pack

        def text_field(text: str | None) -> bytes:
            if text is None:
                return NULL
            data = text.encode()
            return pack(len(data)) + data

        return text_field

    def field(text: str | None) -> bytes:
        return NULL if text is None else encode_value(convert(text))

    return field


@dataclass
class Encoded:
    """What ``encode`` wrote: rows per sink, and where each row came from."""

    rows: list[int]
    line_map: LineMap

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


# Rows per block when dealing rows out to several sinks: small enough to balance 100k
# rows over a few connections, large enough that block bookkeeping costs nothing.
BLOCK_ROWS = 2048


def encode(source: BinaryIO, columns: Sequence[Column], sinks: Sequence[BinaryIO]) -> Encoded:
    """Write one binary COPY payload per sink; rows are dealt out in ``BLOCK_ROWS`` blocks.

    Row ``r`` goes to sink ``(r // BLOCK_ROWS) % len(sinks)``: ``global_row`` inverts it.
    """
    fields_out = [field_encoder(c) for c in columns]
    converters = [pgtypes.converter(c) for c in columns]
    names = [c.name for c in columns]
    width = len(columns)
    count = struct.pack(">h", width)
    line_map = LineMap()
    per_sink = [0] * len(sinks)
    for sink in sinks:
        sink.write(SIGNATURE)
    batch: list[bytes] = []
    sink_index = 0
    in_block = 0
    for row, (line, fields) in enumerate(csvparse.records(source)):
        line_map.note(row, line)
        try:
            if len(fields) != width:
                raise ValueError("field count")
            batch.append(count)
            batch.extend([f(text) for f, text in zip(fields_out, fields, strict=True)])
        except ValueError:
            convert_row(line, fields, converters, names)  # raises the located LabError
            raise  # unreachable: the row converted cleanly the second time
        in_block += 1
        if in_block == BLOCK_ROWS:
            sinks[sink_index].write(b"".join(batch))
            per_sink[sink_index] += in_block
            batch.clear()
            in_block = 0
            sink_index = (sink_index + 1) % len(sinks)
    if batch:
        sinks[sink_index].write(b"".join(batch))
        per_sink[sink_index] += in_block
    for sink in sinks:
        sink.write(TRAILER)
    return Encoded(per_sink, line_map)


def global_row(sink: int, local_row: int, sinks: int) -> int:
    """The input row index of the ``local_row``-th row written to ``sink``."""
    block, offset = divmod(local_row, BLOCK_ROWS)
    return (block * sinks + sink) * BLOCK_ROWS + offset
