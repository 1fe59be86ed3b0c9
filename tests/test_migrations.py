"""Migrations: ordered, once each, checksummed, and all-or-nothing per file."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from lab.errors import LabError
from lab.migrate import discover, is_current, migrate
from tests.conftest import MIGRATIONS

RECORDS_COLUMNS = [
    ("id", "bigint"),
    ("uuid", "uuid"),
    ("name", "text"),
    ("email", "text"),
    ("amount", "numeric(12,2)"),
    ("quantity", "integer"),
    ("created_at", "timestamp with time zone"),
    ("is_active", "boolean"),
    ("score", "double precision"),
    ("category", "text"),
]


def _columns(url: str, table: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
               WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
               ORDER BY a.attnum""",
            (table,),
        ).fetchall()
    return [(str(n), str(t)) for n, t in rows]


def test_records_has_exactly_the_ten_columns_in_order(db_url: str) -> None:
    assert _columns(db_url, "ingest.records") == RECORDS_COLUMNS
    assert _columns(db_url, "ingest.records_unlogged") == RECORDS_COLUMNS
    ledger = dict(_columns(db_url, "lab.uploads"))
    for column in (
        "upload_id",
        "target_table",
        "rows",
        "bytes",
        "strategy",
        "content_sha256",
        "status",
        "parse_ms",
        "in_db_ms",
        "commit_ms",
        "total_ms",
        "error",
        "created_at",
        "finished_at",
    ):
        assert column in ledger


def test_rerun_is_a_noop_and_recorded_with_checksums(db_url: str) -> None:
    assert migrate(db_url, MIGRATIONS) == []
    assert is_current(db_url, MIGRATIONS)
    with psycopg.connect(db_url) as conn:
        recorded = conn.execute(
            "SELECT version, checksum FROM lab.schema_migrations ORDER BY version"
        ).fetchall()
    assert recorded == [(m.version, m.checksum) for m in discover(MIGRATIONS)]


@pytest.fixture
def scratch(admin_url: str, tmp_path: Path) -> tuple[str, Path]:
    from tests.conftest import _with_dbname

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS t_mig_scratch WITH (FORCE)")
        conn.execute("CREATE DATABASE t_mig_scratch")
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    return _with_dbname(admin_url, "t_mig_scratch"), folder


def test_an_edited_applied_migration_is_refused(scratch: tuple[str, Path]) -> None:
    url, folder = scratch
    migrate(url, folder)
    first = sorted(folder.glob("001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(LabError, match="edited after it was applied"):
        migrate(url, folder)
    assert not (folder / "x").exists()


def test_a_failing_migration_leaves_the_database_as_it_was(scratch: tuple[str, Path]) -> None:
    url, folder = scratch
    migrate(url, folder)
    (folder / "900_broken.sql").write_text(
        "CREATE TABLE ingest.half_done (x int);\nCREATE TABLEE oops (;\n"
    )
    with pytest.raises(LabError, match=r"900_broken\.sql failed and was rolled back") as err:
        migrate(url, folder)
    assert "syntax error" in str(err.value)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('ingest.half_done')").fetchone() == (None,)
        assert conn.execute(
            "SELECT count(*) FROM lab.schema_migrations WHERE version = 900"
        ).fetchone() == (0,)
    assert not is_current(url, folder)


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("SELECT 1")
    with pytest.raises(LabError, match=r"NNN_name\.sql"):
        discover(tmp_path)
