"""The bad-input catalog (tests/badinput_catalog.py) through the HTTP service, under every
strategy: each case gets its documented answer and leaves the database as it was.

Flask's test client runs the whole catalog for every strategy (it is the same WSGI app
gunicorn serves); a real gunicorn then replays it for every strategy, so socket reads,
chunking and the worker's error handling are covered too. The expensive inputs (50 MiB
field, 16 MiB line, 1 MiB header) go through the test client for every strategy and
through gunicorn for the first one only.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from badinput_catalog import CASES, Case, U
from flask import Flask

import strategies
from lab.config import Settings
from service import create_app
from service.db import close_db
from service.stack import running_stack

LIMIT = 64 * 1024 * 1024
BASELINE = [(900_001 + i, f"baseline {i}") for i in range(3)]
Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture(scope="module")
def app(db_url: str) -> Iterator[Flask]:
    settings = Settings(database_url=db_url, max_upload_bytes=LIMIT, spool_bytes=1024 * 1024)
    app = create_app({"SETTINGS": settings, "TESTING": True})
    yield app
    close_db(app)


def reset(conn: Conn) -> None:
    """A table holding three rows, an empty ledger."""
    conn.execute("TRUNCATE ingest.records, lab.uploads")
    for id_, name in BASELINE:
        conn.execute(
            "INSERT INTO ingest.records (id, uuid, name, category) VALUES (%s, %s, %s, 'b')",
            (id_, U, name),
        )


def snapshot(conn: Conn) -> tuple[object, ...]:
    """Row count and checksum of every ingest table, plus any stray staging tables."""
    row = conn.execute(
        """SELECT (SELECT count(*) FROM ingest.records),
                  (SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))
                     FROM ingest.records r),
                  (SELECT count(*) FROM ingest.records_pk),
                  (SELECT count(*) FROM ingest.records_unlogged),
                  (SELECT count(*) FROM pg_class c JOIN pg_namespace n
                     ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('ingest', 'lab', 'public') AND c.relkind = 'r')"""
    ).fetchone()
    assert row is not None
    return tuple(row)


def new_rows(conn: Conn) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT id, name, category FROM ingest.records WHERE id < 900000 ORDER BY id"
    ).fetchall()


def request_kwargs(case: Case, body: bytes) -> dict[str, Any]:
    """How the case is sent, as keyword arguments shared by Flask's client and requests."""
    if case.send == "raw":
        return {"data": body, "headers": {"Content-Type": "text/csv", **case.headers}}
    if case.send == "multipart":
        return {"files": [("file", ("data.csv", body, "text/csv"))]}
    if case.send == "multipart-nofile":
        return {"files": [("other", ("data.csv", body, "text/csv"))]}
    if case.send == "multipart-two":
        return {
            "files": [
                ("file", ("a.csv", body, "text/csv")),
                ("file", ("b.csv", body, "text/csv")),
            ]
        }
    raise AssertionError(case.send)


def check_answer(case: Case, status: int, payload: Any, text: str) -> None:
    assert status == case.status, text[:500]
    assert "Traceback" not in text
    if case.status == 201:
        assert set(payload) >= {"upload_id", "rows", "bytes"}
        assert payload["rows"] == len(case.rows)
        return
    assert set(payload) == {"error"}, text[:500]
    error = payload["error"]
    assert set(error) == {"code", "message", "line", "column"}
    assert (error["code"], error["line"], error["column"]) == (
        case.code,
        case.line,
        case.column,
    ), error
    assert 0 < len(error["message"]) < 300


def check_database(case: Case, conn: Conn, before: tuple[object, ...]) -> None:
    if case.status == 201:
        assert new_rows(conn) == list(case.rows)
        conn.execute("DELETE FROM ingest.records WHERE id < 900000")
    assert snapshot(conn) == before
    # The ledger never claims success for a refused upload.
    statuses = [r[0] for r in conn.execute("SELECT status FROM lab.uploads").fetchall()]
    assert statuses == [] or statuses == ["succeeded" if case.status == 201 else "failed"]


def _flask_post(client: Any, url: str, case: Case, body: bytes) -> Any:
    kwargs = request_kwargs(case, body)
    if "files" in kwargs:
        # Werkzeug's test client takes multipart fields as a dict of lists.
        data: dict[str, list[tuple[io.BytesIO, str]]] = {}
        for name, (filename, content, _type) in kwargs["files"]:
            data.setdefault(name, []).append((io.BytesIO(content), filename))
        return client.post(url, data=data, content_type="multipart/form-data")
    return client.post(url, data=kwargs["data"], headers=kwargs["headers"])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("strategy", strategies.names())
def test_catalog_through_the_app(app: Flask, conn: Conn, case: Case, strategy: str) -> None:
    reset(conn)
    before = snapshot(conn)
    response = _flask_post(app.test_client(), f"/upload?strategy={strategy}", case, case.body())
    text = response.get_data(as_text=True)
    check_answer(case, response.status_code, response.get_json(silent=True), text)
    check_database(case, conn, before)


# -- the same catalog through a real gunicorn ---------------------------------------------

GUNICORN_STRATEGIES = strategies.names()


@pytest.fixture(scope="module")
def gunicorn_url(db_url: str) -> Iterator[str]:
    env = {"LAB_MAX_UPLOAD_BYTES": str(LIMIT), "LAB_SPOOL_BYTES": str(1024 * 1024)}
    with running_stack(db_url, nginx=False, workers=2, env=env) as stack:
        yield stack.http_url


def replay(base_url: str, conn: Conn, strategy: str, *, big: bool, verify: Any = True) -> None:
    """Send the whole catalog over real HTTP; report every case that got the wrong answer."""
    failures = []
    with requests.Session() as http:
        for case in CASES:
            if case.big and not big:
                continue
            reset(conn)
            before = snapshot(conn)
            response = http.post(
                f"{base_url}/upload",
                params={"strategy": strategy},
                timeout=120,
                verify=verify,
                **request_kwargs(case, case.body()),
            )
            try:
                payload = response.json()
            except ValueError:
                payload = None
            try:
                check_answer(case, response.status_code, payload, response.text)
                check_database(case, conn, before)
            except AssertionError as exc:
                failures.append(f"{case.id}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("strategy", GUNICORN_STRATEGIES)
def test_catalog_through_gunicorn(gunicorn_url: str, conn: Conn, strategy: str) -> None:
    replay(gunicorn_url, conn, strategy, big=strategy == GUNICORN_STRATEGIES[0])


def test_catalog_through_nginx(
    db_url: str, conn: Conn, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """nginx (TLS, body limit, unbuffered request bodies) in front: the same answers."""
    env = {"LAB_MAX_UPLOAD_BYTES": str(LIMIT), "LAB_SPOOL_BYTES": str(1024 * 1024)}
    home = tmp_path_factory.mktemp("home")
    with running_stack(db_url, workers=1, env=env, home=home) as stack:
        assert stack.https_url is not None and stack.ca_file is not None
        replay(stack.https_url, conn, "psycopg-text", big=True, verify=str(stack.ca_file))
