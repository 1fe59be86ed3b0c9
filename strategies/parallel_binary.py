"""``parallel-binary``: the binary payload split over N connections loading at once.

The CSV is parsed and encoded once (as in psycopg-binary), dealt out in row blocks to N
spools. Each of N connections creates its own UNLOGGED staging table in ``lab``, COPYs
its slice in binary and commits. One final transaction then moves every slice into the
target (``INSERT … SELECT … UNION ALL``), drops the staging tables and runs
``finalize``: the rows appear all at once or not at all. If any slice fails, nothing
reaches the target and the staging tables are dropped.

in_db_ms (server clock throughout): from the earliest slice's first statement to the end
of the final move, before the final COMMIT; it includes the slices' own commits. parse_ms
is the encode. N comes from the constructor or ``LAB_PARALLEL_WORKERS`` (0 = one per core).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import BinaryIO, ClassVar

from psycopg import sql

from strategies import common, fastencode, parts, spool
from strategies.base import Connector, Finalize, LoadResult, Timings
from strategies.psycopg_binary import copy_spool
from strategies.slices import ParallelStrategy, binary_lines, move_rows, run_slices, width
from strategies.unlogged_staging import STAGING_SCHEMA


class ParallelBinary(ParallelStrategy):
    name: ClassVar[str] = "parallel-binary"
    description: ClassVar[str] = "binary COPY split over N connections into staging, then one move"
    streaming: ClassVar[bool] = False

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        n = width(db, self.workers)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
        # The parse holds no connection: a pool serves other loads meanwhile.
        with contextlib.ExitStack() as stack:
            payloads = [stack.enter_context(spool.spooled()) for _ in range(n)]
            parse_start = time.perf_counter()
            encoded = fastencode.encode(reader.stream, plan.columns, payloads)
            parse_ms = (time.perf_counter() - parse_start) * 1000
            prefix = f"stage_{uuid.uuid4().hex}"
            stages = [sql.Identifier(STAGING_SCHEMA, f"{prefix}_{k}") for k in range(n)]
            # On success the final transaction drops the staging tables itself.
            conns = stack.enter_context(parts.slice_connections(db, stages))
            starts = run_slices(
                n,
                lambda k: self._slice(conns[k], plan, stages[k], payloads[k]),
                binary_lines(encoded.line_map, n),
            )
            conn = conns[0]
            with conn.transaction():
                common.pin_session(conn)
                moved = conn.execute(move_rows(plan.target, plan.names, stages))
                rows = moved.rowcount
                end = common.server_clock_ms(conn)
                for s in stages:
                    conn.execute(sql.SQL("DROP TABLE {}").format(s))
                if finalize is not None:
                    conn.execute(finalize(rows).encode())
                commit_start = time.perf_counter()
            commit_ms = (time.perf_counter() - commit_start) * 1000
        return LoadResult(
            strategy=self.name,
            table=table,
            rows=rows,
            bytes=reader.count,
            timings=Timings(
                parse_ms=parse_ms,
                in_db_ms=end - min(starts),
                commit_ms=commit_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
        )

    @staticmethod
    def _slice(
        conn: common.Conn, plan: common.Plan, stage: sql.Identifier, payload: BinaryIO
    ) -> float:
        """Create one staging table and COPY one slice into it; returns its server start."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            stage, plan.target.column_list(plan.names)
        )
        with conn.transaction():
            common.pin_session(conn)
            start = common.server_clock_ms(conn)
            conn.execute(
                sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                    stage, plan.target.ident
                )
            )
            with conn.cursor() as cur:
                copy_spool(cur, statement, payload)
        return start
