"""Every environment variable the lab reads, with its default, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Environment variable names; docker-compose.yml and .env.example use exactly these.
ENV_DATABASE_URL = "DATABASE_URL"
ENV_HOME = "LAB_HOME"
ENV_PG_PORT = "LAB_PG_PORT"
ENV_STRATEGY = "LAB_STRATEGY"
ENV_MAX_UPLOAD_BYTES = "LAB_MAX_UPLOAD_BYTES"
ENV_SPOOL_BYTES = "LAB_SPOOL_BYTES"
ENV_AUTH_TOKENS = "LAB_AUTH_TOKENS"
ENV_MODE = "LAB_MODE"
ENV_LOG_LEVEL = "LAB_LOG_LEVEL"
ENV_POOL_SIZE = "LAB_POOL_SIZE"
ENV_STATEMENT_TIMEOUT_MS = "LAB_STATEMENT_TIMEOUT_MS"
ENV_MIGRATIONS_DIR = "LAB_MIGRATIONS_DIR"
# The upload service's process settings (gunicorn.conf.py reads these).
ENV_HOST = "LAB_HOST"
ENV_PORT = "LAB_PORT"
ENV_SOCKET = "LAB_SOCKET"
ENV_WORKERS = "LAB_WORKERS"
ENV_THREADS = "LAB_THREADS"
ENV_PARALLEL_WORKERS = "LAB_PARALLEL_WORKERS"
ENV_MAX_PARTS = "LAB_MAX_PARTS"

ALL_ENV_VARS = (
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_PG_PORT,
    ENV_STRATEGY,
    ENV_MAX_UPLOAD_BYTES,
    ENV_SPOOL_BYTES,
    ENV_AUTH_TOKENS,
    ENV_MODE,
    ENV_LOG_LEVEL,
    ENV_POOL_SIZE,
    ENV_STATEMENT_TIMEOUT_MS,
    ENV_MIGRATIONS_DIR,
    ENV_HOST,
    ENV_PORT,
    ENV_SOCKET,
    ENV_WORKERS,
    ENV_THREADS,
    ENV_PARALLEL_WORKERS,
    ENV_MAX_PARTS,
)


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        from lab.errors import LabError

        raise LabError(f"{name} must be an integer, got {raw!r}", code="bad_config") from None


@dataclass(frozen=True)
class Settings:
    """Configuration read from the environment; defaults suit a developer's machine."""

    database_url: str | None = None
    home: Path = PROJECT_ROOT / ".lab"
    pg_port: int | None = None
    strategy: str = "psycopg-text"
    max_upload_bytes: int = 2 * 1024**3
    spool_bytes: int = 8 * 1024**2
    auth_tokens: str = ""
    mode: str = "development"
    log_level: str = "INFO"
    pool_size: int = 4
    statement_timeout_ms: int = 0
    migrations_dir: Path = PROJECT_ROOT / "migrations"
    host: str = "127.0.0.1"
    port: int = 8000
    socket: str = ""  # Unix socket path for nginx; empty: TCP only
    workers: int = 0  # 0: one per CPU core
    threads: int = 4
    #: Connections of the parallel strategies; 0 means one per CPU core.
    parallel_workers: int = 0
    #: Part tables a target may collect (parallel-freeze, parallel-text) before the
    #: service folds them back into it in the background; 0 turns that off.
    max_parts: int = 64

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        port = env.get(ENV_PG_PORT)
        return cls(
            database_url=env.get(ENV_DATABASE_URL) or None,
            home=Path(env.get(ENV_HOME) or cls.home).resolve(),
            pg_port=_int(env, ENV_PG_PORT, 0) if port else None,
            strategy=env.get(ENV_STRATEGY) or cls.strategy,
            max_upload_bytes=_int(env, ENV_MAX_UPLOAD_BYTES, cls.max_upload_bytes),
            spool_bytes=_int(env, ENV_SPOOL_BYTES, cls.spool_bytes),
            auth_tokens=env.get(ENV_AUTH_TOKENS, cls.auth_tokens),
            mode=env.get(ENV_MODE) or cls.mode,
            log_level=(env.get(ENV_LOG_LEVEL) or cls.log_level).upper(),
            pool_size=_int(env, ENV_POOL_SIZE, cls.pool_size),
            statement_timeout_ms=_int(env, ENV_STATEMENT_TIMEOUT_MS, cls.statement_timeout_ms),
            migrations_dir=Path(env.get(ENV_MIGRATIONS_DIR) or cls.migrations_dir),
            host=env.get(ENV_HOST) or cls.host,
            port=_int(env, ENV_PORT, cls.port),
            socket=env.get(ENV_SOCKET, cls.socket),
            workers=_int(env, ENV_WORKERS, cls.workers),
            threads=_int(env, ENV_THREADS, cls.threads),
            parallel_workers=_int(env, ENV_PARALLEL_WORKERS, cls.parallel_workers),
            max_parts=_int(env, ENV_MAX_PARTS, cls.max_parts),
        )
