"""``parallel-text``: the CSV bytes dealt at record boundaries to N ``COPY … FREEZE`` streams.

The streaming counterpart of ``parallel-freeze``, for the end-to-end path: no Python
parse at all. The upload is read as it arrives and cut between records
(``recordsplit.Dealer``, a quote-parity count at C speed); each block goes, round-robin,
to one of N connections, each of which creates a part table in its own transaction and
``COPY … (FORMAT csv, FREEZE)``-s its blocks into it, so PostgreSQL parses the CSV on N
backends at once while the body is still arriving. One final transaction publishes the
parts (``strategies/parts.py``: ``INHERIT``, or a row move into a target with a unique
index) and runs ``finalize``. A rejected block fails the load as one COPY would: same
error, same upload line; every part is dropped and the target is as it was.

Memory stays flat: each stream holds at most ``QUEUE_CHUNKS`` chunks in flight.

in_db_ms (server clock): from the earliest part's first statement to the end of the
publish, before its COMMIT; it includes waiting for the client's bytes and the parts'
own commits. ``steps``: ``slices`` and ``publish``. N: constructor, else
``LAB_PARALLEL_WORKERS`` (0 = one per core).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import BinaryIO, ClassVar

import psycopg
from psycopg import sql

from strategies import common, parts
from strategies.base import Connector, Finalize, LoadResult
from strategies.recordsplit import BLOCK_BYTES, Dealer
from strategies.slices import ParallelStrategy, run_slices, width

# Chunks in flight per stream: enough slack that one slower backend does not stall the
# others at every block, while a load holds at most N * 8 * CHUNK_BYTES (2 MiB for two).
QUEUE_CHUNKS = 8


class _Aborted(Exception):
    """The upload could not be read to its end: the part's transaction rolls back."""


class ParallelText(ParallelStrategy):
    name: ClassVar[str] = "parallel-text"
    description: ClassVar[str] = (
        "CSV dealt at record boundaries to N COPY csv FREEZE streams, one attach publishes"
    )
    streaming: ClassVar[bool] = True
    attaches_parts: ClassVar[bool] = True

    def __init__(self, workers: int | None = None, block_bytes: int = BLOCK_BYTES) -> None:
        super().__init__(workers)
        self.block_bytes = block_bytes

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        n = width(db, self.workers)
        plan, attach = parts.plan(db, reader.stream, table)
        tables = parts.names(table, n)
        # Each stream's feed: bytes, then None at the end of the upload; ``broken`` set
        # first when the upload could not be read to its end (every part rolls back).
        feeds: list[queue.Queue[bytes | None]] = [queue.Queue(QUEUE_CHUNKS) for _ in range(n)]
        broken = threading.Event()
        dealer = Dealer(n, first_line=2, block_bytes=self.block_bytes)  # header: line 1

        def deal() -> None:
            try:
                while chunk := reader.read(common.CHUNK_BYTES):
                    for k, piece in dealer.feed(chunk):
                        feeds[k].put(piece)
            except BaseException:
                broken.set()
                raise
            finally:
                for f in feeds:
                    f.put(None)

        with parts.slice_connections(db, tables) as conns:
            filled = run_slices(
                n,
                lambda k: self._slice(conns[k], plan, tables[k], feeds[k], broken),
                dealer.line_of,
                deal,
            )
            done = parts.publish_load(
                conns[0],  # its part is committed: it publishes them all
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
            parse_ms=0.0,
            filled=filled,
            done=done,
        )

    @staticmethod
    def _slice(
        conn: common.Conn,
        plan: common.Plan,
        part: sql.Identifier,
        feed: queue.Queue[bytes | None],
        broken: threading.Event,
    ) -> parts.Filled:
        """Create one part and COPY its stream into it (``parts.fill``). Drains its feed
        whatever happens, so the reader never blocks on a stream that has stopped."""
        piece: bytes | None = b""

        def send(cur: psycopg.Cursor[tuple[object, ...]], statement: sql.Composed) -> None:
            nonlocal piece
            with cur.copy(statement) as copy:
                while (piece := feed.get()) is not None:
                    copy.write(piece)
                if broken.is_set():
                    raise _Aborted

        try:
            return parts.fill(conn, plan, part, "csv", send)
        finally:
            while piece is not None:
                piece = feed.get()
