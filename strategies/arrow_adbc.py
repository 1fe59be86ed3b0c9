"""``arrow-adbc``: pyarrow's CSV reader → typed Arrow batches → ADBC PostgreSQL bulk ingest.

The upload is spooled, read by ``pyarrow.csv`` in pieces of whole records
(``fastencode.pieces``) as strings (unquoted empty = NULL, ``""`` = empty string, the
project's NULL rule), and each column is converted with PostgreSQL's
text-input rules (``pgtypes``) into its exact Arrow type: decimal128(p,s) for
numeric(p,s), ``arrow.uuid`` for uuid, timestamp[us, UTC] for timestamptz. The batches
go to a bounded spool as an Arrow IPC stream, so parsing finishes before the transaction
and memory stays bounded; ADBC then streams them with a binary COPY.

A quick structural scan (``csvparse.regular``) first checks that pyarrow will read the
input as PostgreSQL does (one line ending, no NUL or invalid UTF-8, no blank lines, no
quotes inside unquoted fields). When it will not, or pyarrow or a value conversion
fails, the input is parsed with ``csvparse`` instead, which reads it as PostgreSQL does
and locates any error at PostgreSQL's line and column.

in_db_ms: from just before the ingest to just after it, on the server's clock, inside
the load transaction: the driver's lookups (current schema, the target's columns), reading
the spooled Arrow batches and the binary COPY; not the parsing.
Values Arrow cannot carry (numeric NaN, infinite dates and timestamps) are refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, BinaryIO, ClassVar

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from lab.errors import LabError
from strategies import binary, common, csvparse, fastencode, pgtypes, spool
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.catalog import Column
from strategies.pgerrors import input_error, is_input_sqlstate

# Rows per Arrow batch on the exact path, and bytes per spooling read. Each batch passes
# through Python objects for the value conversion: with 4 MiB blocks and 64k-row batches
# tracemalloc showed a 10 MB upload peak at 14 MB of Python memory, with these at 11 MB
# (then mostly pyarrow's streaming reader reading ahead through the spool, since replaced
# by fastencode's pieces).
BATCH_ROWS = 8192
BLOCK_BYTES = 1024 * 1024

_UNIX_EPOCH_USECS = pgtypes.days_from_civil(1970, 1, 1) * pgtypes.USECS_PER_DAY
_UNIX_EPOCH_DAYS = pgtypes.days_from_civil(1970, 1, 1)

Adapter = Callable[[object], object]


def _identity(value: object) -> object:
    return value


def _usecs(value: object) -> object:
    assert isinstance(value, int)
    if value in (pgtypes.TIMESTAMP_INFINITY, pgtypes.TIMESTAMP_MINUS_INFINITY):
        raise ValueError("infinite timestamps cannot be loaded by arrow-adbc")
    return value - _UNIX_EPOCH_USECS


def _days(value: object) -> object:
    assert isinstance(value, int)
    if value in (pgtypes.DATE_INFINITY, pgtypes.DATE_MINUS_INFINITY):
        raise ValueError("infinite dates cannot be loaded by arrow-adbc")
    return value - _UNIX_EPOCH_DAYS


def _decimal(value: object) -> object:
    assert isinstance(value, Decimal)
    if value.is_nan():
        raise ValueError("numeric NaN cannot be loaded by arrow-adbc")
    return value


def arrow_type(column: Column) -> tuple[pa.DataType, Adapter]:
    """The Arrow type for a column, and how a converted value becomes an Arrow value."""
    t = pgtypes
    simple = {
        t.INT2: pa.int16(),
        t.INT4: pa.int32(),
        t.INT8: pa.int64(),
        t.FLOAT4: pa.float32(),
        t.FLOAT8: pa.float64(),
        t.BOOL: pa.bool_(),
        t.UUID: pa.uuid(),
        t.TEXT: pa.string(),
        t.VARCHAR: pa.string(),
        t.BPCHAR: pa.string(),
    }
    oid = column.type_oid
    if oid in simple:
        pgtypes.converter(column)
        return simple[oid], _identity
    if oid == t.TIMESTAMPTZ:
        return pa.timestamp("us", tz="UTC"), _usecs
    if oid == t.TIMESTAMP:
        return pa.timestamp("us"), _usecs
    if oid == t.DATE:
        return pa.date32(), _days
    if oid == t.NUMERIC:
        m = re.fullmatch(r"numeric\((\d+),(\d+)\)", column.type_name.replace(" ", ""))
        if m and int(m[1]) <= 38:
            return pa.decimal128(int(m[1]), int(m[2])), _decimal
    raise LabError(
        f"column {column.name!r} has type {column.type_name}, which arrow-adbc cannot "
        "load exactly; use another strategy",
        code="unsupported_type",
        status=422,
        column=column.name,
    )


class _Fallback(Exception):
    """pyarrow's reading is not trusted for this input: parse it with csvparse."""


class ArrowAdbc(Strategy):
    name: ClassVar[str] = "arrow-adbc"
    description: ClassVar[str] = "pyarrow CSV → typed Arrow batches → ADBC PostgreSQL ingest"
    streaming: ClassVar[bool] = False

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
        columns = plan.columns
        kinds = [arrow_type(c) for c in columns]
        schema = pa.schema([pa.field(c.name, k[0]) for c, k in zip(columns, kinds, strict=True)])
        with spool.spooled() as raw, spool.spooled() as batches:
            parse_start = time.perf_counter()
            exact = _spool_input(reader.stream, raw, len(columns))
            rows = 0
            if not exact:
                try:
                    rows = _write_batches(batches, schema, self._fast(raw, columns, kinds))
                except _Fallback:
                    exact = True
            if exact:
                batches.seek(0)
                batches.truncate()
                raw.seek(0)
                rows = _write_batches(batches, schema, self._exact(raw, columns, kinds))
            parse_ms = (time.perf_counter() - parse_start) * 1000
            batches.seek(0)
            in_db, commit_ms = self._ingest(db.conninfo, plan, batches, rows, finalize)
        return LoadResult(
            strategy=self.name,
            table=table,
            rows=rows,
            bytes=reader.count,
            timings=Timings(
                parse_ms=parse_ms,
                in_db_ms=in_db,
                commit_ms=commit_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
        )

    @staticmethod
    def _fast(
        raw: BinaryIO, columns: list[Column], kinds: list[tuple[pa.DataType, Adapter]]
    ) -> Iterator[list[pa.Array]]:
        """Batches read by pyarrow, one in-memory piece of whole records at a time
        (``fastencode.pieces``); any doubt raises ``_Fallback``.

        pyarrow never gets the spool itself: its streaming reader keeps reading a Python
        file ahead on a background thread, even after it has failed, and so moved the
        spool under the exact parser that reads it next (a 50 MiB field lost 1 MiB in 4 of
        15 loads). Pieces also keep memory at one piece, not the whole upload.
        """
        names = [c.name for c in columns]
        convert = _Converter([pgtypes.converter(c) for c in columns], kinds)
        for piece in fastencode.pieces(raw):
            try:
                table = fastencode.read_piece(piece, names)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise _Fallback from exc
            for batch in table.to_batches():
                if batch.num_rows:
                    yield convert(batch)

    @staticmethod
    def _exact(
        raw: BinaryIO, columns: list[Column], kinds: list[tuple[pa.DataType, Adapter]]
    ) -> Iterator[list[pa.Array]]:
        """Batches from csvparse: PostgreSQL's reading, with its line numbers on errors."""
        line_map = binary.LineMap()
        adapters = [k[1] for k in kinds]
        pending: list[list[object]] = [[] for _ in columns]
        for row, values in enumerate(binary.typed_rows(raw, columns, line_map)):
            for i, (adapt, value) in enumerate(zip(adapters, values, strict=True)):
                try:
                    pending[i].append(None if value is None else adapt(value))
                except ValueError as exc:
                    raise LabError(
                        str(exc),
                        code="bad_csv",
                        status=422,
                        line=line_map.line(row),
                        column=columns[i].name,
                    ) from None
            if len(pending[0]) == BATCH_ROWS:
                yield [pa.array(p, type=k[0]) for p, k in zip(pending, kinds, strict=True)]
                pending = [[] for _ in columns]
        if pending[0]:
            yield [pa.array(p, type=k[0]) for p, k in zip(pending, kinds, strict=True)]

    def _ingest(
        self,
        conninfo: str,
        plan: common.Plan,
        batches: BinaryIO,
        rows: int,
        finalize: Finalize | None,
    ) -> tuple[float, float]:
        try:
            with adbc.connect(conninfo) as conn, conn.cursor() as cur:
                for name, value in pgtypes.SESSION_SETTINGS.items():
                    cur.execute("SELECT set_config($1, $2, true)", (name, value))
                cur.execute(common.CLOCK_SQL)
                t0 = float(_first(cur.fetchone()))
                stream = pa.ipc.open_stream(batches)
                cur.adbc_ingest(
                    plan.target.table, stream, mode="append", db_schema_name=plan.target.schema
                )
                cur.execute(common.CLOCK_SQL)
                in_db = float(_first(cur.fetchone())) - t0
                if finalize is not None:
                    cur.execute(finalize(rows))
                commit_start = time.perf_counter()
                conn.commit()
                return in_db, (time.perf_counter() - commit_start) * 1000
        except adbc_driver_manager.Error as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if is_input_sqlstate(sqlstate):
                raise input_error(str(exc).splitlines()[0], None, sqlstate) from None
            raise


class _Converter:
    """Converts pyarrow's string batches; a value error means ``_Fallback``."""

    def __init__(
        self, converters: list[pgtypes.Converter], kinds: list[tuple[pa.DataType, Adapter]]
    ) -> None:
        self._plan = list(zip(converters, kinds, strict=True))

    def __call__(self, batch: pa.RecordBatch) -> list[pa.Array]:
        arrays = []
        for i, (convert, (arrow, adapt)) in enumerate(self._plan):
            try:
                values = [
                    None if s is None else adapt(convert(s)) for s in batch.column(i).to_pylist()
                ]
                arrays.append(pa.array(values, type=arrow))
            except (ValueError, pa.ArrowException) as exc:
                raise _Fallback from exc
        return arrays


def _first(row: Any) -> Any:
    assert row is not None
    return row[0]


def _spool_input(reader: BinaryIO, raw: BinaryIO, width: int) -> bool:
    """Copy the upload to ``raw``; True when only csvparse reads it as PostgreSQL does."""
    while chunk := reader.read(BLOCK_BYTES):
        raw.write(chunk)
    raw.seek(0)
    exact = not csvparse.regular(raw, width)
    raw.seek(0)
    return exact


def _write_batches(sink: BinaryIO, schema: pa.Schema, batches: Iterator[list[pa.Array]]) -> int:
    """Write batches as an Arrow IPC stream; returns the number of rows."""
    rows = 0
    with pa.ipc.new_stream(sink, schema) as writer:
        for arrays in batches:
            batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
