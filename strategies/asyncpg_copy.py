"""``asyncpg-copy``: the CSV bytes streamed through asyncpg's ``copy_to_table``.

Like psycopg-text the server parses the CSV (so values and errors are PostgreSQL's own)
and memory stays flat; what differs is the driver and its event loop. The catalog and
header check run on a psycopg connection first; the load runs on an asyncpg connection
opened with the pinned session settings. in_db_ms includes waiting for the client's
bytes, as for every streaming COPY.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, ClassVar

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from strategies import common
from strategies.base import Connector, Finalize, LoadResult, Strategy, Timings
from strategies.pgerrors import input_error, is_input_sqlstate
from strategies.pgtypes import SESSION_SETTINGS


def asyncpg_params(conninfo: str) -> dict[str, Any]:
    """asyncpg's connect() arguments for a libpq connection string or URL."""
    params = conninfo_to_dict(conninfo)
    names = {"host": "host", "port": "port", "user": "user", "password": "password"}
    out: dict[str, Any] = {k: params[v] for k, v in names.items() if params.get(v)}
    if params.get("dbname"):
        out["database"] = params["dbname"]
    if "port" in out:
        out["port"] = int(str(out["port"]))
    if params.get("sslmode"):
        out["ssl"] = str(params["sslmode"])  # asyncpg takes libpq's sslmode names
    settings = _server_settings(str(params.get("options") or ""))
    if settings:
        # e.g. the service's statement_timeout, passed as options='-c statement_timeout=…'
        out["server_settings"] = settings
    return out


def _server_settings(options: str) -> dict[str, str]:
    """libpq ``options`` (``-c name=value`` pairs) as asyncpg's ``server_settings``."""
    words = shlex.split(options)
    settings: dict[str, str] = {}
    for i, word in enumerate(words):
        pair = word[2:] if word.startswith("-c") and len(word) > 2 else None
        if word == "-c" and i + 1 < len(words):
            pair = words[i + 1]
        if pair and "=" in pair:
            name, _, value = pair.partition("=")
            settings[name.strip()] = value.strip()
    return settings


class AsyncpgCopy(Strategy):
    name: ClassVar[str] = "asyncpg-copy"
    description: ClassVar[str] = "CSV bytes streamed through asyncpg copy_to_table (server parses)"
    streaming: ClassVar[bool] = True

    def load(
        self, source: BinaryIO, table: str, db: Connector, *, finalize: Finalize | None = None
    ) -> LoadResult:
        started = time.perf_counter()
        reader = common.CountingReader(source)
        with db.connection() as conn:
            plan = common.plan(conn, reader.stream, table)
        rows, in_db, commit_ms = asyncio.run(self._load(reader, plan, db.conninfo, finalize))
        return LoadResult(
            strategy=self.name,
            table=table,
            rows=rows,
            bytes=reader.count,
            timings=Timings(
                parse_ms=0.0,
                in_db_ms=in_db,
                commit_ms=commit_ms,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
        )

    async def _load(
        self,
        reader: common.CountingReader,
        plan: common.Plan,
        conninfo: str,
        finalize: Finalize | None,
    ) -> tuple[int, float, float]:
        async def chunks() -> AsyncIterator[bytes]:
            while chunk := reader.read(common.CHUNK_BYTES):
                yield chunk

        params = asyncpg_params(conninfo)
        settings = {**params.pop("server_settings", {}), **SESSION_SETTINGS}
        conn = await asyncpg.connect(**params, server_settings=settings)
        try:
            tx = conn.transaction()
            await tx.start()
            try:
                t0 = float(await conn.fetchval(common.CLOCK_SQL))
                status = await conn.copy_to_table(
                    plan.target.table,
                    schema_name=plan.target.schema,
                    columns=plan.names,
                    source=chunks(),
                    format="csv",
                )
                in_db = float(await conn.fetchval(common.CLOCK_SQL)) - t0
                rows = int(str(status).split()[-1])
                if finalize is not None:
                    await conn.execute(finalize(rows))
            except BaseException:
                await tx.rollback()
                raise
            commit_start = time.perf_counter()
            await tx.commit()
            commit_ms = (time.perf_counter() - commit_start) * 1000
        except asyncpg.PostgresError as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if is_input_sqlstate(sqlstate):
                raise input_error(
                    str(getattr(exc, "message", None) or exc),
                    getattr(exc, "context", None),
                    sqlstate,
                ) from None
            raise
        finally:
            await conn.close()
        return rows, in_db, commit_ms
