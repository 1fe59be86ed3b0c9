"""docker-compose.yml, .env.example and the Dockerfile, checked by reading them (no Docker
engine here): services, healthchecks, and that every variable name is one the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab.config import ALL_ENV_VARS, PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
NGINX_TEMPLATE = PROJECT_ROOT / "nginx.conf"
#: Read by the postgres image, not by the lab.
POSTGRES_VARS = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}
#: Read by the nginx image's template renderer.
NGINX_IMAGE_VARS = {"NGINX_ENVSUBST_OUTPUT_DIR"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _interpolated(text: str) -> set[str]:
    """Names used as ${NAME}, ${NAME:-default} or ${NAME:?message} in compose."""
    return set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))


def test_services_and_their_wiring(compose):
    assert set(compose["services"]) == {"api", "db", "nginx"}
    api, db, nginx = (compose["services"][n] for n in ("api", "db", "nginx"))
    assert api["build"] == "."
    assert db["image"].startswith("postgres:")
    assert nginx["image"].startswith("nginx:")
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    assert set(compose["volumes"]) >= {"pgdata", "sockets"}
    assert any(v.startswith("pgdata:") for v in db["volumes"])
    # nginx reaches gunicorn through the shared socket volume.
    socket = _env(api)["LAB_SOCKET"]
    assert _env(nginx)["NGINX_UPSTREAM_SOCKET"] == socket
    assert any(v == f"sockets:{Path(socket).parent}" for v in api["volumes"])
    assert any(v == f"sockets:{Path(socket).parent}" for v in nginx["volumes"])
    assert any(v.startswith("./nginx.conf:") for v in nginx["volumes"])


def test_healthchecks(compose):
    db_check = compose["services"]["db"]["healthcheck"]["test"]
    command = " ".join(db_check[1:]) if isinstance(db_check, list) else db_check
    assert "pg_isready" in command and "-h 127.0.0.1" in command
    api_check = " ".join(compose["services"]["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check and _env(compose["services"]["api"])["LAB_PORT"] in api_check


def test_api_environment_names_are_the_ones_lab_config_reads(compose):
    names = set(_env(compose["services"]["api"]))
    assert names <= set(ALL_ENV_VARS), names - set(ALL_ENV_VARS)
    assert "DATABASE_URL" in names
    assert _env(compose["services"]["api"])["DATABASE_URL"].startswith("postgresql://lab:")


def test_nginx_environment_fills_exactly_the_template_placeholders(compose):
    placeholders = set(re.findall(r"\$\{(NGINX_[A-Z_]+)\}", NGINX_TEMPLATE.read_text()))
    names = set(_env(compose["services"]["nginx"])) - NGINX_IMAGE_VARS
    assert names == placeholders


def test_db_environment(compose):
    assert set(_env(compose["services"]["db"])) <= POSTGRES_VARS


def test_env_example_names_are_read_and_used():
    keys = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert keys <= set(ALL_ENV_VARS) | POSTGRES_VARS, keys - set(ALL_ENV_VARS)
    used = _interpolated(COMPOSE.read_text())
    assert keys <= used, keys - used
    # Every variable compose interpolates is documented in the example.
    assert used <= keys, used - keys
    assert (
        not (PROJECT_ROOT / ".env").exists() or ".env" in (PROJECT_ROOT / ".gitignore").read_text()
    )


def test_dockerfile_is_slim_and_unprivileged():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert stages and all(s == "python:3.12-slim" for s in stages)
    final = text[text.rindex("FROM") :]
    assert re.search(r"^USER\s+lab$", final, re.MULTILINE)
    assert "apt-get" not in final and "build-essential" not in text
    assert "gunicorn -c gunicorn.conf.py" in final
    for name in re.findall(r"\b(LAB_[A-Z_]+)=", final):
        assert name in ALL_ENV_VARS


@pytest.mark.parametrize("doc", ["README.md", "docs/service.md"])
def test_docs_compose_commands_match_the_file(compose, doc):
    docs = (PROJECT_ROOT / doc).read_text()
    for line in re.findall(r"^\s*(docker compose .+)$", docs, re.MULTILINE):
        for service in re.findall(r"\b(api|db|nginx|web|app)\b", line.split("#")[0]):
            assert service in compose["services"], line
    assert "docker compose up" in docs
    published = compose["services"]["nginx"]["ports"][0].split(":")[0]
    assert f"https://localhost:{published}/upload" in docs
