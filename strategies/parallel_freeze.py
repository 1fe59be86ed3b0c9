"""``parallel-freeze``: N connections each create and fill a fresh table, one attach publishes.

The CSV is encoded once (``fastencode``) and dealt out to N spools. Each of N connections,
in its own transaction, creates ``ingest_parts.<target>_<id>_<k>`` (``LIKE`` the target),
COPYs its slice into it with ``FREEZE`` and commits: a table created in the same
transaction under ``wal_level=minimal`` is not WAL-logged (it is synced at commit
instead), and ``FREEZE`` writes the rows already frozen, so no later vacuum rewrites
them. One final transaction then publishes all slices at once, ``ALTER TABLE … INHERIT``
per slice (a catalog change, no row is moved; a slice that got no rows is dropped
instead), and runs ``finalize``. Until that commit
no slice is visible through the target; if any slice or the publish fails, every slice
table is dropped and the target is as it was.

A target with a unique index (e.g. ``records_pk``) cannot be split into children: the
index would not span them. For such targets the publish moves the rows instead (``INSERT
… SELECT`` from the slices, then drops them), as ``parallel-binary`` does.

What it costs: the target becomes an inheritance parent, with N more child tables per
upload (catalog rows, files, and planning time for every query on the target, which now
scans parent + children). ``TRUNCATE`` of the target empties the children but keeps them.

in_db_ms (server clock): from the earliest slice's first statement to the end of the
publish, before its COMMIT; it includes the slices' own commits (where the new files are
synced). ``steps``: ``slices`` (earliest start to the last slice's commit) and
``publish``. parse_ms is the encode. N: constructor, else ``LAB_PARALLEL_WORKERS`` (0 = one
per core).
"""

from __future__ import annotations

import contextlib
import time
from typing import BinaryIO, ClassVar

from psycopg import sql

from lab.errors import LabError
from strategies import common, fastencode, parts, spool
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.parallel_binary import default_workers
from strategies.psycopg_binary import copy_spool
from strategies.slices import binary_lines, connections, run_slices, width

PARTS_SCHEMA = parts.SCHEMA


class ParallelFreeze(Strategy):
    name: ClassVar[str] = "parallel-freeze"
    description: ClassVar[str] = (
        "N connections COPY … FREEZE into fresh tables (no WAL), one attach publishes"
    )
    streaming: ClassVar[bool] = False
    attaches_parts: ClassVar[bool] = True

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise LabError("parallel-freeze needs at least one worker", code="bad_config")

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        n = width(db, self.workers)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
            attach = parts.can_attach(conn, plan.target)
            if not conn.autocommit:
                conn.rollback()
        with contextlib.ExitStack() as stack:
            payloads = [stack.enter_context(spool.spooled()) for _ in range(n)]
            parse_start = time.perf_counter()
            encoded = fastencode.encode(reader.stream, plan.columns, payloads)
            parse_ms = (time.perf_counter() - parse_start) * 1000
            tables = parts.names(table, n)
            conns = stack.enter_context(connections(db, n))
            with parts.dropped_on_failure(db, conns, tables):
                spans = run_slices(
                    n,
                    lambda k: self._slice(conns[k], plan, tables[k], payloads[k]),
                    binary_lines(encoded.line_map, n),
                )
                done = parts.publish_load(
                    conns[0],  # its slice is committed: it publishes them all
                    plan,
                    tables,
                    attach=attach,
                    rows=encoded.total_rows,
                    finalize=finalize,
                    empty=frozenset(k for k, (_, _, rows) in enumerate(spans) if rows == 0),
                )
        first = min(start for start, _, _ in spans)
        return LoadResult(
            strategy=self.name,
            table=table,
            rows=done.rows,
            bytes=reader.count,
            timings=Timings(
                parse_ms=parse_ms,
                in_db_ms=done.end - first,
                commit_ms=done.commit_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
            steps=(
                ("slices", max(done for _, done, _ in spans) - first),
                ("publish", done.end - done.start),
            ),
        )

    @staticmethod
    def _slice(
        conn: common.Conn, plan: common.Plan, part: sql.Identifier, payload: BinaryIO
    ) -> tuple[float, float, int]:
        """Create one slice table and COPY … FREEZE into it; returns its server start, the
        server time just after its commit, and its rows."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary, FREEZE)").format(
            part, plan.target.column_list(plan.names)
        )
        with conn.transaction():
            common.pin_session(conn)
            start = common.server_clock_ms(conn)
            parts.create(conn, part, plan.target)
            with conn.cursor() as cur:
                rows = copy_spool(cur, statement, payload)
        return start, common.server_clock_ms(conn), rows
