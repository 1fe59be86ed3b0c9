"""Running a load's N slices concurrently, each on its own connection (parallel strategies).

Pure orchestration: the strategy says what one slice does; this waits for every slice
before judging (so none is still writing when the caller cleans up) and turns the first
rejected slice into the user's error, with the line number in the whole file.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
from psycopg import sql

from strategies import binary
from strategies.catalog import Target
from strategies.pgerrors import copy_error, is_input_error

T = TypeVar("T")


def run_slices(n: int, load_slice: Callable[[int], T], line_map: binary.LineMap) -> list[T]:
    """``load_slice(k)`` for k in 0..n-1 on n threads; their results in slice order."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(load_slice, k) for k in range(n)]
        outcomes = [(k, f.exception()) for k, f in enumerate(futures)]
    results = []
    for k, error in outcomes:
        if error is None:
            results.append(futures[k].result())
            continue
        if isinstance(error, psycopg.Error) and is_input_error(error):
            raise copy_error(
                error,
                line_of=lambda line, k=k: line_map.line(  # type: ignore[misc]
                    binary.global_row(k, line - 1, n)
                ),
            ) from None
        raise error
    return results


def move_rows(target: Target, names: list[str], slices: list[sql.Identifier]) -> sql.Composed:
    """One ``INSERT … SELECT … UNION ALL …`` moving every slice table's rows into the target."""
    columns = target.column_list(names)
    return sql.SQL("INSERT INTO {} ({}) ").format(target.ident, columns) + sql.SQL(
        " UNION ALL "
    ).join(sql.SQL("SELECT {} FROM {}").format(columns, s) for s in slices)
