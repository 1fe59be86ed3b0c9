"""``psycopg-text``: the CSV bytes streamed unchanged into ``COPY … FROM STDIN (FORMAT csv)``.

No Python-level parsing: PostgreSQL parses the CSV, so memory stays flat and the
client does almost nothing. In-DB time includes waiting for the client's bytes.
"""

from __future__ import annotations

import time
from typing import BinaryIO, ClassVar

import psycopg
from psycopg import sql

from strategies import catalog
from strategies.common import pin_session
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.header import read_header
from strategies.pgerrors import copy_error, is_input_error

# 128 KiB reads: below ~32 KiB the per-write overhead shows in the in-DB time; above
# 1 MiB nothing more is gained and each worker holds more memory per upload.
CHUNK_BYTES = 128 * 1024


def server_clock_ms(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """The server's wall clock in milliseconds (``clock_timestamp()``, not the txn start)."""
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp()) * 1000").fetchone()
    assert row is not None
    return float(row[0])  # type: ignore[arg-type]


class PsycopgText(Strategy):
    name: ClassVar[str] = "psycopg-text"
    description: ClassVar[str] = "CSV bytes streamed into COPY FORMAT csv (server parses)"
    streaming: ClassVar[bool] = True

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        with db.connection() as conn:
            target = catalog.resolve(conn, table)
            columns = catalog.match_header(read_header(source), target)
            statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                target.ident, target.column_list(columns)
            )
            nbytes = source.tell() if source.seekable() else 0
            try:
                with conn.transaction():
                    pin_session(conn)
                    t0 = server_clock_ms(conn)
                    with conn.cursor() as cur:
                        with cur.copy(statement) as copy:
                            while chunk := source.read(CHUNK_BYTES):
                                nbytes += len(chunk)
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
            bytes=nbytes,
            timings=Timings(
                parse_ms=0.0,
                in_db_ms=in_db,
                commit_ms=commit_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
        )
