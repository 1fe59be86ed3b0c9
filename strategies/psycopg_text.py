"""``psycopg-text``: the CSV bytes streamed unchanged into ``COPY … FROM STDIN (FORMAT csv)``.

No Python-level parsing: PostgreSQL parses the CSV, so memory stays flat and the
client does almost nothing. In-DB time includes waiting for the client's bytes.
"""

from __future__ import annotations

import time
from typing import BinaryIO, ClassVar

import psycopg
from psycopg import sql

from strategies import common
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.common import CHUNK_BYTES, server_clock_ms
from strategies.pgerrors import copy_error, is_input_error

__all__ = ["CHUNK_BYTES", "PsycopgText", "server_clock_ms"]


class PsycopgText(Strategy):
    name: ClassVar[str] = "psycopg-text"
    description: ClassVar[str] = "CSV bytes streamed into COPY FORMAT csv (server parses)"
    streaming: ClassVar[bool] = True

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
            statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                plan.target.ident, plan.target.column_list(plan.names)
            )
            try:
                with conn.transaction():
                    common.pin_session(conn)
                    t0 = server_clock_ms(conn)
                    with conn.cursor() as cur:
                        with cur.copy(statement) as copy:
                            while chunk := reader.read(CHUNK_BYTES):
                                copy.write(chunk)
                        rows = cur.rowcount
                    in_db = server_clock_ms(conn) - t0
                    if finalize is not None:
                        conn.execute(finalize(rows).encode())
                    commit_start = time.perf_counter()
                commit_ms = (time.perf_counter() - commit_start) * 1000
            except psycopg.Error as exc:
                if is_input_error(exc):
                    raise copy_error(exc) from None
                raise
        return LoadResult(
            strategy=self.name,
            table=table,
            rows=rows,
            bytes=reader.count,
            timings=Timings(
                parse_ms=0.0,
                in_db_ms=in_db,
                commit_ms=commit_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
        )
