"""The upload ledger ``lab.uploads``: one row per attempt, from 'loading' to its outcome.

The row is inserted before the load; the strategy's ``finalize`` statement marks it
'succeeded' inside the load transaction, so a committed load and its ledger entry can
never disagree. A failed load rolls that back and the row is marked 'failed' with the
error the client received.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from strategies.base import Connector, Finalize, Timings

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


def start(db: Connector, table: str, strategy: str) -> uuid.UUID:
    """Record an attempt as 'loading'; returns its upload id."""
    upload_id = uuid.uuid4()
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO lab.uploads (upload_id, target_table, strategy, status)"
            " VALUES (%s, %s, %s, 'loading')",
            (upload_id, table, strategy),
        )
    return upload_id


def finalizer(
    upload_id: uuid.UUID, nbytes: Callable[[], int], sha256: Callable[[], str]
) -> Finalize:
    """The statement that marks the row succeeded, run by the strategy before COMMIT.

    Byte count and checksum are read when it runs, i.e. after the whole body was read.
    """

    def finalize(rows: int) -> str:
        statement = sql.SQL(
            "UPDATE lab.uploads SET status = 'succeeded', rows = {}, bytes = {},"
            " content_sha256 = {}, finished_at = clock_timestamp() WHERE upload_id = {}"
        ).format(
            sql.Literal(rows),
            sql.Literal(nbytes()),
            sql.Literal(sha256()),
            sql.Literal(str(upload_id)),
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
    with db.connection() as conn:
        conn.execute(
            "UPDATE lab.uploads SET status = 'failed', error = %s, bytes = %s,"
            " content_sha256 = %s, finished_at = clock_timestamp() WHERE upload_id = %s",
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
