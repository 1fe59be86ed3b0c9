"""``unlogged-staging``: stream the CSV into a fresh UNLOGGED table, then move the rows.

Both steps run in the one transaction that commits the rows, so the load stays atomic
and the staging table never outlives it (a rollback drops it too). The staging COPY
writes no WAL; the move (``INSERT … SELECT``) pays the target's WAL and index costs in
one set-based statement. in_db_ms runs from the staging table's creation to its drop,
including the wait for the client's bytes during the streaming COPY; ``steps`` splits
it into ``stage_copy`` and ``move``.
"""

from __future__ import annotations

import time
import uuid
from typing import BinaryIO, ClassVar

import psycopg
from psycopg import sql

from strategies import common
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.pgerrors import copy_error, is_input_error

#: Staging tables live in the lab schema, never in ``ingest`` (the upload allow-list).
STAGING_SCHEMA = "lab"


class UnloggedStaging(Strategy):
    name: ClassVar[str] = "unlogged-staging"
    description: ClassVar[str] = "CSV COPY into an UNLOGGED staging table, then INSERT … SELECT"
    streaming: ClassVar[bool] = True

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
            columns = plan.target.column_list(plan.names)
            stage = sql.Identifier(STAGING_SCHEMA, f"stage_{uuid.uuid4().hex}")
            try:
                with conn.transaction():
                    common.pin_session(conn)
                    t0 = common.server_clock_ms(conn)
                    conn.execute(
                        sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                            stage, plan.target.ident
                        )
                    )
                    with conn.cursor() as cur:
                        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)")
                        with cur.copy(copy_sql.format(stage, columns)) as copy:
                            while chunk := reader.read(common.CHUNK_BYTES):
                                copy.write(chunk)
                    t1 = common.server_clock_ms(conn)
                    moved = conn.execute(
                        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                            plan.target.ident, columns, columns, stage
                        )
                    )
                    rows = moved.rowcount
                    t2 = common.server_clock_ms(conn)
                    conn.execute(sql.SQL("DROP TABLE {}").format(stage))
                    in_db = common.server_clock_ms(conn) - t0
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
            steps=(("stage_copy", t1 - t0), ("move", t2 - t1)),
        )
