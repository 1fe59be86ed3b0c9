"""The upload ledger ``lab.uploads``: one row per attempt, from 'loading' to its outcome.

The row is inserted before the load; the strategy's ``finalize`` statement marks it
'succeeded' inside the load transaction, so a committed load and its ledger entry can
never disagree. A failed load rolls that back and the row is marked 'failed' with the
error the client received.

An attempt that dies with its worker (SIGKILL, OOM) or with the database connection
cannot mark itself failed. So every attempt is *leased*: the worker's lease connection
holds a PostgreSQL advisory lock on the attempt while it runs. A 'loading' row whose lock
can be taken has no owner any more; ``reap`` marks such rows failed. PostgreSQL releases a
session's locks when its connection ends, whatever the reason, so no clock or pid
bookkeeping is needed and it works across hosts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from strategies.base import Connector, Finalize, Timings

log = logging.getLogger("service.ledger")

COLUMNS = (
    "upload_id",
    "target_table",
    "strategy",
    "status",
    "rows",
    "bytes",
    "content_sha256",
    "idempotency_key",
    "parse_ms",
    "in_db_ms",
    "commit_ms",
    "total_ms",
    "error",
    "created_at",
    "finished_at",
)

#: First half of the two-int advisory lock key of an attempt (the second is a hash of its
#: upload id). The two-int key space is apart from ``lab.migrate``'s one-bigint lock.
LOCK_CLASS = 7_310_002

_ORPHANED = {
    "error": {
        "code": "orphaned",
        "message": "the worker or database connection loading this upload went away; "
        "nothing was loaded",
        "line": None,
        "column": None,
    }
}


class Lease:
    """One connection per worker that holds the advisory locks of its attempts in flight.

    Threads share it (statements on it are short: lock, insert, update); it reconnects
    after the database went away. The locks it held then are gone, so the attempts that
    were running are reaped — and ``lab.finish_upload`` refuses to mark a reaped attempt
    succeeded, should one of them still reach its COMMIT.
    """

    #: A connection idle longer than this is pinged before use: after a database restart
    #: the first upload then reconnects instead of failing on the dead session. Busy
    #: connections skip the round trip.
    PING_AFTER_IDLE_S = 1.0

    def __init__(self, url: str, connect_timeout_s: int = 5) -> None:
        self._url = url
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()
        self._used = 0.0

    @property
    def conninfo(self) -> str:
        return self._url

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self._lock:
            idle = time.monotonic() - self._used > self.PING_AFTER_IDLE_S
            if self._conn is not None and not self._conn.closed and idle:
                try:
                    self._conn.execute("")
                except psycopg.Error:
                    self._conn.close()
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._url, autocommit=True, connect_timeout=self._timeout
                )
            try:
                yield self._conn
            except psycopg.OperationalError:
                # Most likely the connection itself: start over with a new one next time.
                self._conn.close()
                self._conn = None
                raise
            finally:
                self._used = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _lock_key() -> sql.Composable:
    return sql.SQL("{}, hashtext(upload_id::text)").format(sql.Literal(LOCK_CLASS))


def claim(lease: Lease, table: str, strategy: str, key: str | None) -> tuple[uuid.UUID, bool]:
    """Record an attempt as 'loading' under a lock held by ``lease``.

    Returns ``(upload_id, True)``, or, when ``key`` already belongs to a live attempt
    (loading or succeeded), ``(that attempt's id, False)`` without inserting.
    The lock is taken before the row becomes visible, so the reaper never sees a fresh
    attempt as orphaned.
    """
    with lease.connection() as conn:
        while True:  # a new id whose lock is free (a hash collision is possible, if rare)
            upload_id = uuid.uuid4()
            locked = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s::text))",
                (LOCK_CLASS, str(upload_id)),
            ).fetchone()
            if locked is not None and locked[0] is True:
                break
        row = conn.execute(
            "INSERT INTO lab.uploads (upload_id, target_table, strategy, status, idempotency_key)"
            " VALUES (%s, %s, %s, 'loading', %s)"
            " ON CONFLICT (idempotency_key)"
            " WHERE idempotency_key IS NOT NULL AND status <> 'failed' DO NOTHING"
            " RETURNING upload_id",
            (upload_id, table, strategy, key),
        ).fetchone()
        if row is not None:
            return upload_id, True
        conn.execute(
            "SELECT pg_advisory_unlock(%s, hashtext(%s::text))", (LOCK_CLASS, str(upload_id))
        )
        holder = conn.execute(
            "SELECT upload_id FROM lab.uploads WHERE idempotency_key = %s AND status <> 'failed'",
            (key,),
        ).fetchone()
    if holder is None:  # it failed in between: the key is free again
        return claim(lease, table, strategy, key)
    existing = holder[0]
    assert isinstance(existing, uuid.UUID)
    return existing, False


def release(lease: Lease, upload_id: uuid.UUID) -> None:
    """Drop the attempt's lock once its outcome is recorded (or could not be)."""
    try:
        with lease.connection() as conn:
            conn.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(%s::text))",
                (LOCK_CLASS, str(upload_id)),
            )
    except psycopg.Error:
        # A new or dead connection holds no such lock any more: nothing to release.
        log.debug("lease of upload %s already gone", upload_id)


def reap(conn: psycopg.Connection[tuple[object, ...]]) -> list[uuid.UUID]:
    """Mark 'loading' attempts whose lease is gone as failed; returns their ids.

    ``conn`` must not be a lease connection: advisory locks are re-entrant within a
    session, so there the worker's own live attempts would look free. ``SKIP LOCKED``
    passes over rows a live load is finalizing right now.
    """
    rows = conn.execute(
        sql.SQL(
            "WITH orphans AS ("
            " SELECT upload_id FROM lab.uploads"
            " WHERE status = 'loading' AND pg_try_advisory_xact_lock({})"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE lab.uploads u SET status = 'failed', error = %s,"
            " finished_at = clock_timestamp()"
            " FROM orphans o WHERE u.upload_id = o.upload_id RETURNING u.upload_id"
        ).format(_lock_key()),
        (Jsonb(_ORPHANED),),
    ).fetchall()
    reaped = [r[0] for r in rows if isinstance(r[0], uuid.UUID)]
    for upload_id in reaped:
        log.warning("upload %s had no live owner any more; marked failed", upload_id)
    return reaped


def finalizer(
    upload_id: uuid.UUID, nbytes: Callable[[], int], sha256: Callable[[], str]
) -> Finalize:
    """The statement that marks the row succeeded, run by the strategy before COMMIT.

    Byte count and checksum are read when it runs, i.e. after the whole body was read.
    ``lab.finish_upload`` raises (rolling the load back) if the row is no longer loading.
    """

    def finalize(rows: int) -> str:
        statement = sql.SQL("SELECT lab.finish_upload({}, {}, {}, {})").format(
            sql.Literal(str(upload_id)),
            sql.Literal(rows),
            sql.Literal(nbytes()),
            sql.Literal(sha256()),
        )
        return statement.as_string(None)

    return finalize


def record_timings(db: Connector, upload_id: uuid.UUID, timings: Timings) -> None:
    with db.connection() as conn:
        conn.execute(
            "UPDATE lab.uploads SET parse_ms = %s, in_db_ms = %s, commit_ms = %s, total_ms = %s"
            " WHERE upload_id = %s",
            (timings.parse_ms, timings.in_db_ms, timings.commit_ms, timings.total_ms, upload_id),
        )


def fail(
    db: Connector, upload_id: uuid.UUID, error: dict[str, Any], nbytes: int, sha256: str | None
) -> None:
    """Mark a loading attempt failed (a succeeded one is never overwritten)."""
    with db.connection() as conn:
        conn.execute(
            "UPDATE lab.uploads SET status = 'failed', error = %s, bytes = %s,"
            " content_sha256 = %s, finished_at = clock_timestamp()"
            " WHERE upload_id = %s AND status = 'loading'",
            (Jsonb(error), nbytes, sha256, upload_id),
        )


def get(db: Connector, upload_id: uuid.UUID) -> dict[str, Any] | None:
    """The ledger row as JSON-ready values, or None."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM lab.uploads WHERE upload_id = %s").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
            ),
            (upload_id,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return {key: _jsonable(value) for key, value in row.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
