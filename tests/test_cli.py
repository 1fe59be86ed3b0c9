"""The `lab` command: help for every subcommand, clear errors instead of tracebacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lab.cli import build_parser
from lab.config import PROJECT_ROOT
from tests.conftest import cluster_home


def _lab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=PROJECT_ROOT,
    )


def _all_commands() -> list[list[str]]:
    parser = build_parser()
    found: list[list[str]] = []

    def walk(p: object, prefix: list[str]) -> None:
        for action in getattr(p, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(parser, [])
    return found


@pytest.mark.parametrize("command", [["--help"]] + [[*c, "--help"] for c in _all_commands()])
def test_every_command_has_help(command: list[str]) -> None:
    result = _lab(*command)
    assert result.returncode == 0, result.stderr
    assert "usage: lab" in result.stdout


def test_core_subcommands_exist() -> None:
    names = {" ".join(c) for c in _all_commands()}
    assert {"db", "db up", "db down", "db status", "db url", "db migrate", "gen-csv"} <= names


def test_malformed_database_url_is_a_message_not_a_traceback() -> None:
    result = _lab("db", "migrate", env={"DATABASE_URL": "mysql://x"})
    assert result.returncode == 1
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_url_is_a_message_not_a_traceback() -> None:
    result = _lab("db", "migrate", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nowhere"})
    assert result.returncode == 1
    assert "cannot connect to the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_and_url_against_database_url(db_url: str) -> None:
    result = _lab("db", "migrate", env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    shown = _lab("db", "url", env={"DATABASE_URL": db_url})
    assert shown.stdout.strip() == db_url
    status = _lab("db", "status", env={"DATABASE_URL": db_url})
    assert status.returncode == 0, status.stderr
    assert "wal_level = minimal" in status.stdout


def test_embedded_lifecycle_through_the_cli() -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("embedded cluster only")
    home = cluster_home()
    env = {"LAB_HOME": str(home), "DATABASE_URL": ""}
    try:
        up = _lab("db", "up", env=env)
        assert up.returncode == 0, up.stderr
        assert "started" in up.stdout
        again = _lab("db", "up", env=env)
        assert "already running" in again.stdout
        assert _lab("db", "migrate", env=env).returncode == 0
        url = _lab("db", "url", env=env).stdout.strip()
        psql = subprocess.run(
            [
                _psql(),
                url,
                "-Atc",
                "SELECT string_agg(attname, ',' ORDER BY attnum) "
                "FROM pg_attribute WHERE attrelid = 'ingest.records'::regclass AND attnum > 0",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert psql.stdout.strip() == (
            "id,uuid,name,email,amount,quantity,created_at,is_active,score,category"
        )
        status = _lab("db", "status", env=env)
        assert "running" in status.stdout and "shared_buffers" in status.stdout
    finally:
        down = _lab("db", "down", env=env)
    assert "stopped" in down.stdout
    assert "stopped" in _lab("db", "status", env=env).stdout
    shutil.rmtree(home, ignore_errors=True)


def _psql() -> str:
    from lab.cluster import _pg_bin_dir

    return str(_pg_bin_dir() / "psql")


def test_the_cli_builds_without_the_optional_extras() -> None:
    """The Docker image installs only runtime dependencies and runs `lab db migrate`:
    no subcommand may import a bench/load extra until it runs."""
    extras = ["pandas", "matplotlib", "scipy", "rich", "locust", "sqlalchemy"]
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {extras!r}:\n"
        "            raise ModuleNotFoundError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from lab.cli import build_parser\n"
        "build_parser().parse_args(['db', 'status'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
