"""``psycopg-binary``: parse and encode in Python first, then one binary COPY burst.

The CSV is parsed with PostgreSQL's rules (``csvparse``, ``pgtypes``) and encoded to the
binary COPY format into a bounded spool (``spool``) before the transaction starts, so the
in-DB time covers only the server receiving and storing ready-made tuples. parse_ms is
that client-side work; it grows with the input, the in-DB time does not wait for it.
"""

from __future__ import annotations

import contextlib
import time
from typing import BinaryIO, ClassVar

import psycopg
from psycopg import sql

from strategies import common, fastencode, spool
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.pgerrors import copy_error, is_input_error


def copy_spool(
    cur: psycopg.Cursor[tuple[object, ...]], statement: sql.Composed, data: BinaryIO
) -> int:
    """Send a spooled payload through ``COPY … FROM STDIN``; returns the row count."""
    data.seek(0)
    with cur.copy(statement) as copy:
        while chunk := data.read(common.CHUNK_BYTES):
            copy.write(chunk)
    return cur.rowcount


class PsycopgBinary(Strategy):
    name: ClassVar[str] = "psycopg-binary"
    description: ClassVar[str] = "Python parse/encode to binary COPY, then one COPY burst"
    streaming: ClassVar[bool] = False

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
        # The parse holds no connection: a pool serves other loads meanwhile.
        with spool.spooled() as payload, contextlib.ExitStack() as stack:
            parse_start = time.perf_counter()
            encoded = fastencode.encode(reader.stream, plan.columns, [payload])
            parse_ms = (time.perf_counter() - parse_start) * 1000
            statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                plan.target.ident, plan.target.column_list(plan.names)
            )
            conn = stack.enter_context(db.connection())
            try:
                with conn.transaction():
                    common.pin_session(conn)
                    t0 = common.server_clock_ms(conn)
                    with conn.cursor() as cur:
                        rows = copy_spool(cur, statement, payload)
                    in_db = common.server_clock_ms(conn) - t0
                    if finalize is not None:
                        conn.execute(finalize(rows).encode())
                    commit_start = time.perf_counter()
                commit_ms = (time.perf_counter() - commit_start) * 1000
            except psycopg.Error as exc:
                if is_input_error(exc):
                    raise copy_error(exc, line_of=lambda n: encoded.line_map.line(n - 1)) from None
                raise
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
