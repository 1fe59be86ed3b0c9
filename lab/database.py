"""Which database the lab talks to: ``DATABASE_URL`` when set, else the embedded cluster."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from lab.cluster import EmbeddedCluster
from lab.config import ENV_DATABASE_URL, Settings
from lab.errors import LabError


def check_url(url: str) -> None:
    """Refuse a malformed connection string with a message that names the variable."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise LabError(
            f"{ENV_DATABASE_URL} is not a valid PostgreSQL connection string: {exc}",
            code="bad_config",
        ) from None


def resolve_url(settings: Settings | None = None, *, start: bool = True, tcp: bool = False) -> str:
    """The connection string to use, starting (or reusing) the embedded cluster if needed."""
    settings = settings or Settings.from_env()
    if settings.database_url:
        check_url(settings.database_url)
        return settings.database_url
    cluster = EmbeddedCluster(settings.home)
    if start:
        cluster.up(settings.pg_port)
    return cluster.url(tcp=tcp)


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection, turning 'cannot connect' into a user-facing error."""
    check_url(url)
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise LabError(
            f"cannot connect to the database ({_describe(url)}): {reason}",
            code="db_unavailable",
            status=503,
        ) from None


def _describe(url: str) -> str:
    """host/port/dbname of a URL, never its password."""
    parts = conninfo_to_dict(url)
    host = parts.get("host") or "local socket"
    port = parts.get("port") or 5432
    return f"host={host} port={port} dbname={parts.get('dbname', '')}"
