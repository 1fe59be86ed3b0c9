"""Numbered SQL migrations: ``migrations/NNN_name.sql``, applied in order, once each.

Every file runs in its own transaction and is recorded in ``lab.schema_migrations`` with
its SHA-256. Re-running is a no-op; an applied file whose content changed is refused,
because the database no longer matches what the file says.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from lab.errors import LabError

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# One lock id for the lab: concurrent workers starting up migrate one at a time.
_LOCK_ID = 7_310_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(folder: Path) -> list[Migration]:
    if not folder.is_dir():
        raise LabError(f"migrations folder not found: {folder}", code="bad_config")
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise LabError(
                f"migration file {path.name!r} must be named NNN_name.sql", code="bad_migration"
            )
        found.append(Migration(int(match[1]), match[2], path, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise LabError("two migration files share a number", code="bad_migration")
    return found


def _ensure_ledger(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with conn.transaction():
        conn.execute("CREATE SCHEMA IF NOT EXISTS lab")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS lab.schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )


def applied(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, tuple[str, str]]:
    """version → (name, checksum) of what the database has recorded."""
    exists = conn.execute("SELECT to_regclass('lab.schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return {}
    rows = conn.execute("SELECT version, name, checksum FROM lab.schema_migrations").fetchall()
    return {int(v): (str(n), str(c)) for v, n, c in rows}  # type: ignore[call-overload]


def pending(conn: psycopg.Connection[tuple[object, ...]], folder: Path) -> list[Migration]:
    """Migrations not yet applied; raises if an applied one was edited."""
    done = applied(conn)
    todo = []
    for migration in discover(folder):
        if migration.version in done:
            _, checksum = done[migration.version]
            if checksum != migration.checksum:
                raise LabError(
                    f"migration {migration.path.name} was edited after it was applied "
                    f"(recorded sha256 {checksum[:12]}…, file has {migration.checksum[:12]}…); "
                    "add a new migration instead of changing an applied one",
                    code="migration_edited",
                )
        else:
            todo.append(migration)
    return todo


def migrate(url: str, folder: Path) -> list[Migration]:
    """Apply what is pending, each file in its own transaction; returns what was applied."""
    from lab.database import connect

    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            _ensure_ledger(conn)
            done = []
            for migration in pending(conn, folder):
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO lab.schema_migrations (version, name, checksum)"
                            " VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise LabError(
                        f"migration {migration.path.name} failed and was rolled back: "
                        f"{str(exc).strip()}",
                        code="migration_failed",
                    ) from None
                done.append(migration)
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def is_current(url: str, folder: Path) -> bool:
    """True when every migration file is applied (the service's readiness check)."""
    from lab.database import connect

    with connect(url, autocommit=True) as conn:
        return not pending(conn, folder)
