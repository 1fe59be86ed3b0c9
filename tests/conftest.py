"""Test fixtures: one database cluster per test run, one clean database per test module.

With ``DATABASE_URL`` unset (the default) the run gets its own embedded cluster in a
temporary folder, apart from the developer's ``.lab`` cluster. With ``DATABASE_URL`` set,
each module gets a fresh database on that server when it may create databases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from lab.cluster import EmbeddedCluster
from lab.config import PROJECT_ROOT
from lab.migrate import migrate
from strategies.base import DirectConnector

MIGRATIONS = PROJECT_ROOT / "migrations"


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster | None]:
    """The run's own embedded cluster, or None when DATABASE_URL points elsewhere."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("pg", numbered=True))
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def admin_url(pg_cluster: EmbeddedCluster | None) -> str:
    """A URL on the server with the right to create databases."""
    if pg_cluster is None:
        return os.environ["DATABASE_URL"]
    return pg_cluster.url("postgres")


def _with_dbname(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def fresh_database(admin_url: str, name: str) -> str:
    """Create (or recreate) database ``name``, migrate it, return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(admin_url, name)
    migrate(url, MIGRATIONS)
    return url


@pytest.fixture(scope="module")
def db_url(admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A clean, migrated database for this test module."""
    name = "t_" + re.sub(r"\W", "_", Path(str(request.node.path)).stem)[:50]
    url = fresh_database(admin_url, name)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def db(db_url: str) -> DirectConnector:
    return DirectConnector(db_url)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c
