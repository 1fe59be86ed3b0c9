"""Running a load's N slices concurrently, each on its own connection (parallel strategies).

Pure orchestration: the strategy says what one slice does; this waits for every slice
before judging (so none is still writing when the caller cleans up) and turns the
rejected input into the user's error, with the line number in the whole file. When
several slices reject their input, the error on the earliest line of the file wins, as
it would in one COPY of the whole file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
from psycopg import sql

from lab.config import Settings
from lab.errors import LabError
from strategies import binary
from strategies.base import Connector, Strategy
from strategies.catalog import Target
from strategies.common import Conn
from strategies.pgerrors import copy_error, is_input_error

T = TypeVar("T")

#: (slice k, line number the server reported in slice k's COPY) → line of the upload.
LineOf = Callable[[int, int], int]


def default_workers() -> int:
    """``LAB_PARALLEL_WORKERS``, or one per CPU core when it is 0 (the default)."""
    configured = Settings.from_env().parallel_workers
    return configured if configured > 0 else os.cpu_count() or 1


class ParallelStrategy(Strategy):
    """A strategy whose loads run N slices, one connection each: N from the constructor,
    else ``default_workers()``; a load takes at most what its connector can hand out
    (``width``)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise LabError(f"{self.name} needs at least one worker", code="bad_config")


#: Held while one load takes its N connections (see ``connections``).
_ACQUIRING = threading.Lock()


def width(db: Connector, workers: int) -> int:
    """How many slices (connections) a load of ``workers`` takes from ``db``: ``workers``,
    or the size of a pool that could never hand out that many at once (the service's,
    ``LAB_POOL_SIZE``, when ``LAB_PARALLEL_WORKERS`` is larger: with the default of one
    per core, on any machine of more than four cores)."""
    limit = getattr(db, "max_connections", None)
    return workers if limit is None else max(1, min(workers, int(limit)))


@contextlib.contextmanager
def connections(db: Connector, n: int) -> Iterator[list[Conn]]:
    """N connections for one load, taken before any slice starts.

    Loads take their N under one lock: on a small pool (the service's, per worker) two
    parallel loads could otherwise each hold part of what they need and wait for each
    other until the pool times out. Taking them up front also keeps connection set-up
    out of the load's in-DB window.
    """
    with contextlib.ExitStack() as stack:
        with _ACQUIRING:
            conns = [stack.enter_context(db.connection()) for _ in range(n)]
        yield conns


def usable(conns: list[Conn]) -> Conn | None:
    """A connection of the load still fit for a statement (for publishing or cleanup)."""
    return next((c for c in conns if not (c.closed or c.broken)), None)


def binary_lines(line_map: binary.LineMap, n: int) -> LineOf:
    """``LineOf`` for binary slices dealt by ``binary.encode`` / ``fastencode.encode``."""
    return lambda k, line: line_map.line(binary.global_row(k, line - 1, n))


def run_slices(
    n: int,
    load_slice: Callable[[int], T],
    line_of: LineOf,
    feed: Callable[[], None] | None = None,
) -> list[T]:
    """``load_slice(k)`` for k in 0..n-1 on n threads; their results in slice order.

    ``feed``, when given, runs on the calling thread meanwhile (a streaming strategy
    hands the slices their input there); its own failure is raised after every slice
    has finished, unless a slice rejected the input.
    """
    fed: BaseException | None = None
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(load_slice, k) for k in range(n)]
        if feed is not None:
            try:
                feed()
            except BaseException as exc:  # re-raised below, once every slice has stopped
                fed = exc
        outcomes = [(k, f.exception()) for k, f in enumerate(futures)]
    rejected: list[LabError] = []
    for k, error in outcomes:
        if isinstance(error, psycopg.Error) and is_input_error(error):
            rejected.append(copy_error(error, line_of=lambda line, k=k: line_of(k, line)))  # type: ignore[misc]
    if rejected:
        raise min(rejected, key=lambda e: (e.line is None, e.line or 0))
    if fed is not None:
        raise fed
    for _, error in outcomes:
        if error is not None:
            raise error
    return [f.result() for f in futures]


def move_rows(target: Target, names: list[str], slices: list[sql.Identifier]) -> sql.Composed:
    """One ``INSERT … SELECT … UNION ALL …`` moving every slice table's rows into the target."""
    columns = target.column_list(names)
    return sql.SQL("INSERT INTO {} ({}) ").format(target.ident, columns) + sql.SQL(
        " UNION ALL "
    ).join(sql.SQL("SELECT {} FROM {}").format(columns, s) for s in slices)
