"""One psycopg connection pool per worker process, and the strategies' view of it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import psycopg
from flask import Flask, current_app
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from lab.errors import LabError
from service import ledger
from service.ledger import Lease
from strategies import parts

log = logging.getLogger("service")

#: How long a request waits for a pooled connection before answering 503. Long enough to
#: ride out a burst (a 100k-row load holds a connection ~0.3 s), short enough that a dead
#: database is reported quickly instead of piling requests up behind it.
DEFAULT_POOL_TIMEOUT_S = 5.0
#: What a 503 tells clients to wait before retrying (the Retry-After header, seconds).
RETRY_AFTER_S = 5

_EXTENSION = "lab_pool"
_LEASE = "lab_lease"


def unavailable(exc: BaseException) -> LabError:
    """The user-facing error for 'the database cannot be reached right now'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return LabError(
        f"the database is unavailable, retry later: {reason}",
        code="db_unavailable",
        status=503,
    )


class PoolConnector:
    """The ``strategies.base.Connector`` over the worker's pool."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]]) -> None:
        self._pool = pool

    @property
    def conninfo(self) -> str:
        return str(self._pool.conninfo)

    @property
    def max_connections(self) -> int:
        """The most connections the pool hands out at once (``strategies.slices.width``)."""
        return self._pool.max_size

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()


def with_statement_timeout(url: str, statement_timeout_ms: int) -> str:
    """``url`` with ``-c statement_timeout=N`` in its libpq options (kept with any others),
    so every connection made from it has the limit, whichever driver makes it."""
    if not statement_timeout_ms:
        return url
    params = conninfo_to_dict(url)
    options = str(params.get("options") or "")
    params["options"] = f"{options} -c statement_timeout={int(statement_timeout_ms)}".strip()
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def create_pool(url: str, size: int, timeout_s: float, statement_timeout_ms: int) -> PoolConnector:
    """Open the pool without waiting: the worker starts even while the database is down
    (``/readyz`` says so), and connections are checked before each use (a restarted
    database costs the requests nothing but a reconnect)."""
    pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]] = ConnectionPool(
        with_statement_timeout(url, statement_timeout_ms),
        min_size=1,
        max_size=max(1, size),
        timeout=timeout_s,
        open=False,
        check=ConnectionPool.check_connection,
        # autocommit: a strategy's ``conn.transaction()`` is then the real BEGIN/COMMIT
        # (not a savepoint inside an implicit transaction opened by a catalog lookup).
        kwargs={"connect_timeout": 5, "autocommit": True},
        name="lab",
    )
    pool.open(wait=False)
    return PoolConnector(pool)


def get_db() -> PoolConnector:
    """This worker's connector."""
    db: PoolConnector = current_app.extensions[_EXTENSION]
    return db


def get_lease() -> Lease:
    """This worker's lease connection (ledger rows and their advisory locks)."""
    lease: Lease = current_app.extensions[_LEASE]
    return lease


def close_db(app: Flask) -> None:
    db: PoolConnector | None = app.extensions.pop(_EXTENSION, None)
    if db is not None:
        db.close()
    lease: Lease | None = app.extensions.pop(_LEASE, None)
    if lease is not None:
        lease.close()


def init_app(app: Flask) -> None:
    """Create the pool and the lease. ``create_app`` runs in each gunicorn worker after the
    fork (no ``preload_app``), so every worker gets its own, never a forked copy."""
    import atexit

    settings = app.config["SETTINGS"]
    app.extensions[_EXTENSION] = create_pool(
        app.config["DATABASE_URL"],
        settings.pool_size,
        float(app.config.get("POOL_TIMEOUT", DEFAULT_POOL_TIMEOUT_S)),
        settings.statement_timeout_ms,
    )
    # Not from the pool: its locks must live exactly as long as this worker's connection,
    # and recording an outcome must not wait behind loads for a pooled connection.
    app.extensions[_LEASE] = Lease(app.config["DATABASE_URL"])
    atexit.register(close_db, app)
    reap_at_boot(app.config["DATABASE_URL"])


def reap_at_boot(url: str) -> None:
    """Fail the uploads a dead worker left 'loading' (e.g. the one this worker replaces),
    and drop the part tables its parallel load had committed but not published.

    Best effort: with the database down the worker still starts; uploads and ``/readyz``
    reap again later, ``lab compact`` drops orphaned parts too.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            ledger.reap(conn)
            if dropped := parts.drop_orphans(conn):
                log.warning("dropped %d orphaned part tables: %s", len(dropped), dropped)
    except psycopg.Error as exc:
        log.info("no reaping at start: %s", str(exc).strip().splitlines()[-1:] or exc)
