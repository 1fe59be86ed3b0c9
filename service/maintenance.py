"""Background upkeep of the upload targets: folding part tables back in.

``parallel-freeze`` and ``parallel-text`` attach N part tables to their target per upload
(``strategies/parts.py``), and every reader and ``TRUNCATE`` of the target pays for each
child. Once a target has more than ``LAB_MAX_PARTS`` of them, the worker folds them back
(``parts.compact``: one transaction, each row moved once) on a thread of its own, after
the upload was answered: no upload waits for it. One compaction at a time per worker and
at most one queued per table; compactions of one target from several workers take turns
on PostgreSQL's advisory lock. The compaction uses its own connection, not the pool's.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from flask import Flask, current_app

from strategies import catalog, parts

log = logging.getLogger("service.maintenance")

_EXTENSION = "lab.compactor"


class Compactor:
    """Runs ``parts.compact`` for a target once it has more than ``max_parts`` parts."""

    def __init__(self, url: str, max_parts: int) -> None:
        self._url = url
        self._max_parts = max_parts
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-compact")
        self._queued: set[str] = set()
        self._lock = threading.Lock()

    def after_upload(self, table: str) -> None:
        """Check ``table`` in the background (0 = never)."""
        if self._max_parts <= 0:
            return
        with self._lock:
            if table in self._queued:
                return
            self._queued.add(table)
        self._threads.submit(self._check, table)

    def _check(self, table: str) -> None:
        try:
            with psycopg.connect(self._url, autocommit=True) as conn:
                target = catalog.resolve(conn, table)
                if len(parts.attached(conn, target)) <= self._max_parts:
                    return
                started = time.perf_counter()
                done = parts.compact(conn, target)
                log.info(
                    "Compacted %s.%s: folded %d part tables (%d rows) in %.0f ms",
                    target.schema,
                    target.table,
                    done.parts,
                    done.rows,
                    (time.perf_counter() - started) * 1000,
                )
        except Exception:  # upkeep must never take the worker down; the next upload retries
            log.exception("compacting the part tables of %s failed", table)
        finally:
            with self._lock:
                self._queued.discard(table)

    def close(self) -> None:
        """Wait for a running compaction (it is one transaction: it commits or not)."""
        self._threads.shutdown(wait=True)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.extensions[_EXTENSION] = Compactor(app.config["DATABASE_URL"], settings.max_parts)


def get_compactor() -> Compactor:
    compactor: Compactor = current_app.extensions[_EXTENSION]
    return compactor


def close(app: Flask) -> None:
    compactor: Compactor | None = app.extensions.pop(_EXTENSION, None)
    if compactor is not None:
        compactor.close()
