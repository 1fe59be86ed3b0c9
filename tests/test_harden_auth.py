"""Auth and limits, with real gunicorn and nginx: bearer tokens per table, 401/403, the
production mode refusing to run without tokens, and 413 from nginx and from the app."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys

import pytest

from lab.config import PROJECT_ROOT, Settings
from lab.errors import LabError
from lab.fakedata import csv_bytes
from service import auth, create_app
from service.db import close_db
from service.stack import nginx_binary, running_stack
from tests.harden_http import audit, count, ledger, multipart, request, upload

RECORDS_TOKEN = "records-only-token-0123456789"
ALL_TOKEN = "all-tables-token-abcdefghijkl"
TOKENS = f"{RECORDS_TOKEN}:records,records_unlogged; {ALL_TOKEN}:*"
LIMIT = 1_000_000
needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def stack(db_url, tmp_path_factory):
    env = {
        "LAB_MODE": "production",
        "LAB_AUTH_TOKENS": TOKENS,
        "LAB_MAX_UPLOAD_BYTES": str(LIMIT),
    }
    with running_stack(
        db_url, workers=1, nginx=True, home=tmp_path_factory.mktemp("h"), env=env
    ) as s:
        yield s


@pytest.fixture
def clean(conn):
    conn.execute("TRUNCATE ingest.records, ingest.records_pk, lab.uploads")
    return conn


def test_no_token_is_401_with_www_authenticate_and_nothing_happens(stack, clean):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer "}):
        answer = upload(stack.http_url, csv_bytes(10, seed=1), headers=headers)
        assert answer.status == 401, answer.body
        assert answer.code == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert count(clean) == 0
    assert ledger(clean) == []  # refused before any ledger row


def test_wrong_token_is_401(stack, clean):
    for token in ("x" * 30, RECORDS_TOKEN + "x", RECORDS_TOKEN[:-1], ALL_TOKEN.upper()):
        answer = upload(stack.http_url, csv_bytes(10, seed=2), token=token)
        assert answer.status == 401 and answer.code == "unauthorized", token
    assert count(clean) == 0 and ledger(clean) == []


def test_token_loads_into_its_tables_and_is_403_elsewhere(stack, clean):
    ok = upload(stack.http_url, csv_bytes(100, seed=3), token=RECORDS_TOKEN)
    assert ok.status == 201, ok.body
    pk = "/tables/records_pk/upload"
    denied = upload(stack.http_url, csv_bytes(100, seed=4), token=RECORDS_TOKEN, path=pk)
    assert denied.status == 403 and denied.code == "forbidden"
    assert count(clean, "records_pk") == 0
    allowed = upload(stack.http_url, csv_bytes(100, seed=4), token=ALL_TOKEN, path=pk)
    assert allowed.status == 201, allowed.body
    assert count(clean) == 100 and count(clean, "records_pk") == 100
    audit(clean)
    # A token for every table still gets 404 for a table outside the ingest schema.
    missing = upload(stack.http_url, b"a\n1\n", token=ALL_TOKEN, path="/tables/uploads/upload")
    assert missing.status == 404


def test_ledger_rows_need_a_token_with_their_table(stack, clean):
    created = upload(
        stack.http_url, csv_bytes(5, seed=5), token=ALL_TOKEN, path="/tables/records_pk/upload"
    ).json()
    path = f"/uploads/{created['upload_id']}"
    assert request(stack.http_url, path=path).status == 401
    assert request(stack.http_url, path="/uploads/not-an-id").status == 401
    bearer = {"Authorization": f"Bearer {RECORDS_TOKEN}"}
    assert request(stack.http_url, path=path, headers=bearer).status == 403
    answer = request(stack.http_url, path=path, headers={"Authorization": f"Bearer {ALL_TOKEN}"})
    assert answer.status == 200 and answer.json()["status"] == "succeeded"


def test_health_readiness_and_contract_stay_open(stack):
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert request(stack.http_url, path=path).status == 200, path
        if stack.https_url:
            assert request(stack.https_url, path=path, ca_file=stack.ca_file).status == 200
    spec = request(stack.http_url, path="/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"bearer": []} in spec["paths"]["/upload"]["post"]["security"]
    assert {"401", "403"} <= set(spec["paths"]["/upload"]["post"]["responses"])
    assert "security" not in spec["paths"]["/healthz"]["get"]


@needs_nginx
def test_tokens_pass_through_nginx(stack, clean):
    body = csv_bytes(50, seed=6)
    assert upload(stack.https_url, body, ca_file=stack.ca_file).status == 401
    answer = upload(stack.https_url, body, token=RECORDS_TOKEN, ca_file=stack.ca_file)
    assert answer.status == 201, answer.body
    assert count(clean) == 50


@needs_nginx
def test_nginx_refuses_a_body_over_its_limit_itself(stack, clean):
    """Content-Length over client_max_body_size: nginx's own 413 (its message, not the
    app's), before the request reaches gunicorn: no ledger row."""
    body = csv_bytes(12_000, seed=7)
    assert len(body) > LIMIT
    answer = upload(stack.https_url, body, token=RECORDS_TOKEN, ca_file=stack.ca_file)
    assert answer.status == 413 and answer.code == "too_large"
    assert answer.json()["error"]["message"] == "the upload exceeds the size limit"
    assert count(clean) == 0 and ledger(clean) == []


def test_app_refuses_a_chunked_body_over_its_limit_mid_stream(stack, clean):
    """No Content-Length, straight to gunicorn: the app counts the bytes as they stream into
    COPY and stops at the limit; the load rolls back and the attempt is failed."""
    body = csv_bytes(12_000, seed=8)
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
    answer = request(
        stack.http_url,
        "POST",
        "/upload",
        body=pieces,
        chunked=True,
        headers={"Content-Type": "text/csv", "Authorization": f"Bearer {RECORDS_TOKEN}"},
    )
    assert answer.status == 413 and answer.code == "too_large"
    assert f"limit of {LIMIT} bytes" in answer.json()["error"]["message"]
    assert count(clean) == 0
    assert ledger(clean) == [("failed", "too_large", None)]
    # Multipart too: the declared length is refused up front.
    data, content_type = multipart(body)
    answer = upload(
        stack.http_url, data, token=RECORDS_TOKEN, headers={"Content-Type": content_type}
    )
    assert answer.status == 413 and answer.code == "too_large"
    assert count(clean) == 0


def test_production_without_tokens_refuses_to_start(db_url, tmp_path):
    env = {"LAB_MODE": "production", "LAB_AUTH_TOKENS": ""}
    with (
        pytest.raises(LabError) as caught,
        running_stack(db_url, workers=1, nginx=False, home=tmp_path, env=env),
    ):
        pass
    assert "LAB_AUTH_TOKENS" in str(caught.value)


def _app(db_url: str, **settings: str):
    return create_app({"SETTINGS": Settings(database_url=db_url, **settings), "TESTING": True})


def test_development_mode_is_open_without_tokens_and_enforces_configured_ones(db_url, clean):
    open_app = _app(db_url)
    try:
        answer = open_app.test_client().post("/upload", data=csv_bytes(3), content_type="text/csv")
        assert answer.status_code == 201
    finally:
        close_db(open_app)
    guarded = _app(db_url, auth_tokens=TOKENS)
    try:
        client = guarded.test_client()
        answer = client.post("/upload", data=csv_bytes(3), content_type="text/csv")
        assert answer.status_code == 401
        answer = client.post(
            "/upload",
            data=csv_bytes(3),
            content_type="text/csv",
            headers={"Authorization": f"bearer {RECORDS_TOKEN}"},
        )
        assert answer.status_code == 201
    finally:
        close_db(guarded)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("short:*", "at least 16"),
        (f"{ALL_TOKEN}", "TOKEN:TABLE"),
        (f"{ALL_TOKEN}:", "TOKEN:TABLE"),
        (f"{ALL_TOKEN}:*,records", "mixes"),
        (f"{ALL_TOKEN}:*;{ALL_TOKEN}:records", "repeats"),
    ],
)
def test_malformed_token_configuration_is_refused(value, fragment):
    with pytest.raises(LabError, match=fragment):
        auth.policy(Settings(auth_tokens=value))


def test_unknown_mode_is_refused():
    with pytest.raises(LabError, match="LAB_MODE"):
        auth.policy(Settings(mode="prod"))


def test_every_configured_token_is_compared(monkeypatch):
    """No early exit: the comparison count does not depend on which token matched."""
    grants = auth.parse_tokens(";".join(f"token-number-{i:04d}-padding:*" for i in range(5)))
    calls = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for presented in ("token-number-0000-padding", "token-number-0004-padding", "nope"):
        calls.clear()
        found = auth._match(presented, grants)
        assert len(calls) == len(grants)
        expected = hashlib.sha256(presented.encode()).digest()
        assert (found is not None) == any(g.digest == expected for g in grants)


def test_lab_serve_in_production_without_tokens_stops_before_starting_anything(tmp_path):
    env = {
        **os.environ,
        "LAB_MODE": "production",
        "LAB_AUTH_TOKENS": "",
        "LAB_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lab.cli", "serve", "--no-nginx"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "LAB_AUTH_TOKENS" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home").exists()  # no database was started
