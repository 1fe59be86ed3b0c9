"""One psycopg connection pool per worker process, and the strategies' view of it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool

from lab.errors import LabError

#: How long a request waits for a pooled connection before answering 503. Long enough to
#: ride out a burst (a 100k-row load holds a connection ~0.3 s), short enough that a dead
#: database is reported quickly instead of piling requests up behind it.
DEFAULT_POOL_TIMEOUT_S = 5.0
#: What a 503 tells clients to wait before retrying (the Retry-After header, seconds).
RETRY_AFTER_S = 5

_EXTENSION = "lab_pool"


def unavailable(exc: BaseException) -> LabError:
    """The user-facing error for 'the database cannot be reached right now'."""
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
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

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()


def create_pool(url: str, size: int, timeout_s: float, statement_timeout_ms: int) -> PoolConnector:
    """Open the pool without waiting: the worker starts even while the database is down
    (``/readyz`` says so), and connections are checked before each use."""

    def configure(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        if statement_timeout_ms:
            conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            conn.commit()

    pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]] = ConnectionPool(
        url,
        min_size=1,
        max_size=max(1, size),
        timeout=timeout_s,
        open=False,
        configure=configure,
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


def close_db(app: Flask) -> None:
    db: PoolConnector | None = app.extensions.pop(_EXTENSION, None)
    if db is not None:
        db.close()


def init_app(app: Flask) -> None:
    """Create the pool. ``create_app`` runs in each gunicorn worker after the fork (no
    ``preload_app``), so every worker gets its own pool, never a forked copy."""
    import atexit

    settings = app.config["SETTINGS"]
    app.extensions[_EXTENSION] = create_pool(
        app.config["DATABASE_URL"],
        settings.pool_size,
        float(app.config.get("POOL_TIMEOUT", DEFAULT_POOL_TIMEOUT_S)),
        settings.statement_timeout_ms,
    )
    atexit.register(close_db, app)
