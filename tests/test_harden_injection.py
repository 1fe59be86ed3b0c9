"""Hostile table and column names: the catalog allow-list is the only way to a table.

Every attempt gets a JSON 404 (table) or 400 (header), and afterwards nothing outside
the ingest tables' own rows has changed: the same relations everywhere (names and
relfilenodes), the same lab.* rows, no new table in any schema.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask

import strategies
from lab.config import Settings
from lab.errors import LabError
from service import create_app
from service.db import close_db
from strategies.base import DirectConnector

Conn = psycopg.Connection[tuple[object, ...]]
HEADER = "id,uuid,name,email,amount,quantity,created_at,is_active,score,category"
ROW = "1,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,n,e,1,1,2024-01-01,t,1,c\n"

HOSTILE_TABLES = [
    'records"',
    '"records"',
    "records; DROP TABLE ingest.records; --",
    "records'; DROP TABLE lab.uploads; --",
    "pg_catalog.pg_class",
    "pg_class",
    "lab.uploads",
    "uploads",
    "schema_migrations",
    "ingest.records",
    "../records",
    "..%2Frecords",
    "records%00",
    "records\x00",
    "records\x00; DROP TABLE ingest.records",
    "x" * 10_000,
    "r" * 64,
    "RECORDS",
    " records",
    "recördś",
    "records\u202e",
    "%",
    "*",
    "records)",
    "pg_temp.records",
]

HOSTILE_COLUMNS = [
    'id"; DROP TABLE ingest.records; --',
    "pg_catalog.id",
    "records.id",
    "ID",
    "x" * 10_000,
    "id) ; SELECT pg_sleep(10); --",
    "ctid",
    "xmin",
    "tableoid",
    "'id'",
]


def fingerprint(conn: Conn) -> tuple[object, ...]:
    """Everything an injection could change outside the ingest rows themselves."""
    relations = conn.execute(
        """SELECT n.nspname, c.relname, c.relkind, c.relfilenode
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           ORDER BY 1, 2"""
    ).fetchall()
    ledger = conn.execute(
        "SELECT upload_id, status FROM lab.uploads WHERE status <> 'failed' ORDER BY 1"
    ).fetchall()
    migrations = conn.execute("SELECT * FROM lab.schema_migrations ORDER BY 1").fetchall()
    counts = conn.execute(
        """SELECT (SELECT count(*) FROM ingest.records), (SELECT count(*) FROM ingest.records_pk),
                  (SELECT count(*) FROM ingest.records_unlogged)"""
    ).fetchone()
    roles = conn.execute("SELECT rolname, rolsuper FROM pg_roles ORDER BY 1").fetchall()
    return (tuple(relations), tuple(ledger), tuple(migrations), counts, tuple(roles))


@pytest.fixture(scope="module")
def app(db_url: str) -> Iterator[Flask]:
    app = create_app({"SETTINGS": Settings(database_url=db_url), "TESTING": True})
    yield app
    close_db(app)


@pytest.fixture
def seeded(conn: Conn) -> Conn:
    conn.execute("TRUNCATE ingest.records, ingest.records_pk, lab.uploads")
    conn.execute("INSERT INTO ingest.records (id, name) VALUES (1, 'keep'), (2, 'keep too')")
    return conn


def _json_error(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.get_data(as_text=True)[:300]  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "line", "column"}
    return body["error"]  # type: ignore[no-any-return]


def test_hostile_table_names_over_http_are_404(app: Flask, seeded: Conn) -> None:
    before = fingerprint(seeded)
    client = app.test_client()
    body = (HEADER + "\n" + ROW).encode()
    for name in HOSTILE_TABLES:
        for strategy in strategies.names():
            response = client.post(
                "/tables/" + name.replace("/", "%2F") + f"/upload?strategy={strategy}",
                data=body,
                content_type="text/csv",
            )
            # Werkzeug may refuse some names (an encoded slash) as no route: also 404.
            error = _json_error(response, 404)
            assert error["code"] in ("unknown_table", "not_found"), (name, error)
    assert fingerprint(seeded) == before


@pytest.mark.parametrize("name", strategies.names())
def test_hostile_table_names_in_direct_strategy_calls(
    name: str, db: DirectConnector, seeded: Conn
) -> None:
    before = fingerprint(seeded)
    body = (HEADER + "\n" + ROW).encode()
    for table in HOSTILE_TABLES:
        with pytest.raises(LabError) as info:
            strategies.get(name).load(io.BytesIO(body), table, db)
        assert (info.value.code, info.value.status) in (
            ("unknown_table", 404),
            ("bad_table", 400),
        ), (table, info.value)
    assert fingerprint(seeded) == before


@pytest.mark.parametrize("name", strategies.names())
def test_hostile_header_names_are_400(app: Flask, name: str, seeded: Conn) -> None:
    before = fingerprint(seeded)
    client = app.test_client()
    for column in HOSTILE_COLUMNS:
        quoted = '"' + column.replace('"', '""') + '"'
        header = HEADER.replace("category", quoted)
        response = client.post(
            f"/upload?strategy={name}",
            data=(header + "\n" + ROW).encode(),
            content_type="text/csv",
        )
        error = _json_error(response, 400)
        assert error["code"] == "bad_header" and error["line"] == 1, error
        assert isinstance(error["column"], str) and len(error["column"]) <= 80
    assert fingerprint(seeded) == before


def test_header_values_are_data_not_sql(app: Flask, seeded: Conn) -> None:
    """SQL in a field is a string like any other, stored as sent."""
    hostile = "x'); DROP TABLE ingest.records; --"
    row = ROW.replace(",n,", ',"' + hostile + '",')
    response = app.test_client().post(
        "/upload", data=(HEADER + "\n" + row).encode(), content_type="text/csv"
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    stored = seeded.execute("SELECT name FROM ingest.records WHERE name LIKE 'x%'").fetchall()
    assert stored == [(hostile,)]
