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

from strategies import common, fastencode, parts, spool
from strategies.base import Connector, Finalize, LoadResult
from strategies.psycopg_binary import copy_spool
from strategies.slices import ParallelStrategy, binary_lines, run_slices, width

PARTS_SCHEMA = parts.SCHEMA


class ParallelFreeze(ParallelStrategy):
    name: ClassVar[str] = "parallel-freeze"
    description: ClassVar[str] = (
        "N connections COPY … FREEZE into fresh tables (no WAL), one attach publishes"
    )
    streaming: ClassVar[bool] = False
    attaches_parts: ClassVar[bool] = True

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        n = width(db, self.workers)
        plan, attach = parts.plan(db, reader.stream, table)
        with contextlib.ExitStack() as stack:
            payloads = [stack.enter_context(spool.spooled()) for _ in range(n)]
            parse_start = time.perf_counter()
            encoded = fastencode.encode(reader.stream, plan.columns, payloads)
            parse_ms = (time.perf_counter() - parse_start) * 1000
            tables = parts.names(table, n)
            conns = stack.enter_context(parts.slice_connections(db, tables))
            filled = run_slices(
                n,
                lambda k: parts.fill(
                    conns[k],
                    plan,
                    tables[k],
                    "binary",
                    lambda cur, statement: copy_spool(cur, statement, payloads[k]),
                ),
                binary_lines(encoded.line_map, n),
            )
            done = parts.publish_load(
                conns[0],  # its slice is committed: it publishes them all
                plan,
                tables,
                filled,
                attach=attach,
                finalize=finalize,
            )
        return parts.load_result(
            self.name,
            table,
            reader.count,
            started=started,
            parse_ms=parse_ms,
            filled=filled,
            done=done,
        )
