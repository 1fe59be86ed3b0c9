"""The upload service through Flask's test client, against the real embedded PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from lab.config import Settings
from lab.fakedata import HEADER, csv_bytes
from service import create_app
from service.db import close_db
from strategies.psycopg_text import PsycopgText

LIMIT = 2 * 1024 * 1024
SPOOL = 64 * 1024  # small, so multipart uploads in these tests roll over to disk


def make_app(url: str, **overrides: object) -> Flask:
    settings = Settings(database_url=url, max_upload_bytes=LIMIT, spool_bytes=SPOOL)
    for key, value in overrides.items():
        object.__setattr__(settings, key, value)
    return create_app({"SETTINGS": settings, "TESTING": True, "POOL_TIMEOUT": 1.0})


@pytest.fixture(scope="module")
def app(db_url: str) -> Iterator[Flask]:
    app = make_app(db_url)
    yield app
    close_db(app)


@pytest.fixture
def client(app: Flask, conn: psycopg.Connection[tuple[object, ...]]) -> FlaskClient:
    conn.execute("TRUNCATE ingest.records, ingest.records_pk, lab.uploads")
    return app.test_client()


def count(conn: psycopg.Connection[tuple[object, ...]], table: str = "records") -> int:
    row = conn.execute(f"SELECT count(*) FROM ingest.{table}").fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def multipart(body: bytes, field: str = "file") -> dict[str, object]:
    return {"data": {field: (io.BytesIO(body), "data.csv")}, "content_type": "multipart/form-data"}


def assert_error(response: object, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.get_data(as_text=True)  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "line", "column"}
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in response.get_data(as_text=True)  # type: ignore[attr-defined]
    return body["error"]  # type: ignore[no-any-return]


# -- success -------------------------------------------------------------------------------


def test_multipart_upload_loads_rows_and_records_ledger(client, conn):
    body = csv_bytes(3000, seed=1)
    response = client.post("/upload", **multipart(body))
    assert response.status_code == 201, response.get_data(as_text=True)
    data = response.get_json()
    assert list(data) == ["upload_id", "table", "rows", "bytes", "strategy", "timings"]
    assert list(data["timings"]) == ["parse_ms", "in_db_ms", "commit_ms", "total_ms"]
    assert data["rows"] == 3000
    assert data["bytes"] == len(body)
    assert data["table"] == "records"
    assert data["strategy"] == "psycopg-text"
    assert all(v >= 0 for v in data["timings"].values())
    assert count(conn) == 3000
    assert response.headers["Location"] == f"/uploads/{data['upload_id']}"

    ledger = client.get(f"/uploads/{data['upload_id']}").get_json()
    assert ledger["status"] == "succeeded"
    assert ledger["rows"] == 3000
    assert ledger["bytes"] == len(body)
    assert ledger["content_sha256"] == hashlib.sha256(body).hexdigest()
    assert ledger["target_table"] == "records"
    assert ledger["in_db_ms"] == pytest.approx(data["timings"]["in_db_ms"], abs=0.01)
    assert ledger["finished_at"] is not None and ledger["error"] is None


def test_raw_csv_body_is_streamed_into_the_table(client, conn):
    body = csv_bytes(500, seed=2)
    response = client.post("/upload", data=body, content_type="text/csv")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["rows"] == 500
    assert response.get_json()["bytes"] == len(body)
    assert count(conn) == 500


def test_chunked_raw_body_without_content_length(client, conn):
    body = csv_bytes(200, seed=3)
    response = client.post(
        "/upload",
        input_stream=io.BytesIO(body),
        content_type="text/csv",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert count(conn) == 200


def test_raw_body_shorter_than_its_content_length_loads_nothing(client, conn):
    """A body cut at a line boundary is valid CSV; only the length shows it is incomplete."""
    body = csv_bytes(100, seed=10, quote_share=0)
    cut = body[: body.index(b"\n", len(body) // 2) + 1]
    response = client.post(
        "/upload",
        input_stream=io.BytesIO(cut),
        content_type="text/csv",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": str(len(body))},
    )
    assert_error(response, 400, "incomplete_body")
    assert count(conn) == 0


def test_upload_into_another_ingest_table(client, conn):
    response = client.post("/tables/records_pk/upload", **multipart(csv_bytes(100, seed=4)))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["table"] == "records_pk"
    assert count(conn, "records_pk") == 100
    assert count(conn) == 0


@pytest.mark.parametrize("name", strategies.names())
def test_every_registered_strategy_can_be_chosen(client, conn, name):
    response = client.post(f"/upload?strategy={name}", **multipart(csv_bytes(50, seed=5)))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["strategy"] == name
    assert count(conn) == 50


class _NeedsAFile(PsycopgText):
    """A non-streaming strategy: it gets the raw body spooled, as a seekable file."""

    name = "test-needs-a-file"
    streaming = False

    def load(self, source, table, db, *, finalize=None):
        assert source.seekable()
        return super().load(source, table, db, finalize=finalize)


def test_raw_body_is_spooled_for_a_non_streaming_strategy(client, conn, monkeypatch):
    monkeypatch.setitem(strategies.REGISTRY, _NeedsAFile.name, _NeedsAFile)
    body = csv_bytes(3000, seed=13)
    response = client.post(
        f"/upload?strategy={_NeedsAFile.name}", data=body, content_type="text/csv"
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["bytes"] == len(body)
    assert count(conn) == 3000


def test_upload_logs_one_line_readable_by_a_person(client):
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("service.upload")
    logger.addHandler(handler)
    try:
        data = client.post("/upload", **multipart(csv_bytes(10, seed=6))).get_json()
    finally:
        logger.removeHandler(handler)
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("Inserted 10 rows in ") and " ms " in line
    for part in (
        f"upload_id={data['upload_id']}",
        "table=records",
        "rows=10",
        "strategy=",
        "parse_ms=",
        "in_db_ms=",
        "commit_ms=",
        "total_ms=",
        f"bytes={data['bytes']}",
    ):
        assert part in line


# -- the other endpoints -------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_migrated(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_readyz_503_when_migrations_are_missing(admin_url):
    name = "t_service_unmigrated"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    params = psycopg.conninfo.conninfo_to_dict(admin_url)
    params["dbname"] = name
    app = make_app(psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()}))
    try:
        error = assert_error(app.test_client().get("/readyz"), 503, "not_ready")
        assert "001_init.sql" in str(error["message"])
    finally:
        close_db(app)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_get_upload_unknown_or_malformed_id_is_404(client):
    assert_error(client.get(f"/uploads/{uuid.uuid4()}"), 404, "not_found")
    assert_error(client.get("/uploads/not-a-uuid"), 404, "not_found")


def test_openapi_describes_every_endpoint(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/upload",
        "/tables/{name}/upload",
        "/uploads/{upload_id}",
        "/healthz",
        "/readyz",
        "/openapi.json",
    }
    upload = spec["paths"]["/upload"]["post"]
    assert {"201", "400", "413", "415", "422", "503"} <= set(upload["responses"])
    strategy = next(p for p in upload["parameters"] if p["name"] == "strategy")
    assert strategy["schema"]["enum"] == strategies.names()
    rules = {str(r) for r in client.application.url_map.iter_rules() if r.endpoint != "static"}
    documented = {p.replace("{", "<").replace("}", ">") for p in spec["paths"]}
    assert rules == documented


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "head", "put", "delete"])
def test_upload_with_another_method_is_405(client, method):
    response = getattr(client, method)("/upload")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    if method != "head":
        assert_error(response, 405, "method_not_allowed")


def test_unknown_strategy_is_400_listing_the_valid_ones(client, conn):
    error = assert_error(
        client.post("/upload?strategy=nope", **multipart(csv_bytes(5))), 400, "unknown_strategy"
    )
    for name in strategies.names():
        assert name in str(error["message"])
    assert count(conn) == 0


@pytest.mark.parametrize("table", ["nope", "uploads", "schema_migrations", "pg_class", "records;"])
def test_table_outside_the_ingest_schema_is_404(client, table):
    assert_error(
        client.post(f"/tables/{table}/upload", **multipart(csv_bytes(5))), 404, "unknown_table"
    )


def test_unknown_url_is_json_404(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_bad_value_is_422_with_line_and_column_and_nothing_is_inserted(client, conn):
    lines = csv_bytes(50, seed=7, quote_share=0).decode().splitlines(keepends=True)
    fields = lines[31].split(",")
    fields[HEADER.index("quantity")] = "many"
    lines[31] = ",".join(fields)
    body = "".join(lines).encode()
    response = client.post("/upload", **multipart(body))
    error = assert_error(response, 422, "bad_csv")
    assert error["line"] == 32
    assert error["column"] == "quantity"
    assert count(conn) == 0
    row = conn.execute("SELECT status, error FROM lab.uploads").fetchall()
    assert len(row) == 1
    assert row[0][0] == "failed"
    assert row[0][1] == {"error": error}


def test_unterminated_quote_is_rejected_with_a_line(client, conn):
    body = b"\n".join([",".join(HEADER).encode(), b'1,"unterminated']) + b"\n"
    response = client.post("/upload", data=body, content_type="text/csv")
    error = assert_error(response, response.status_code, "bad_csv")
    assert response.status_code in (400, 422)
    assert error["line"] == 2
    assert count(conn) == 0


def test_bad_header_is_400_on_line_1(client, conn):
    body = b"id,nope\n1,2\n"
    error = assert_error(client.post("/upload", **multipart(body)), 400, "bad_header")
    assert error["line"] == 1
    assert error["column"] == "nope"


def test_empty_body_is_400(client):
    assert_error(client.post("/upload", data=b"", content_type="text/csv"), 400, "empty")


def test_multipart_without_the_file_field_is_400(client, conn):
    assert_error(
        client.post("/upload", **multipart(csv_bytes(5), field="upload")), 400, "missing_file"
    )


def test_truncated_multipart_is_400(client, conn):
    boundary = "lab-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + csv_bytes(20)
    response = client.post(
        "/upload", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert_error(response, 400, "bad_multipart")
    assert count(conn) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-www-form-urlencoded", "image/png", None]
)
def test_wrong_content_type_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/upload", data=csv_bytes(5), headers=headers)
    assert_error(response, 415, "unsupported_media_type")


def test_declared_length_over_the_limit_is_413(client, conn):
    body = csv_bytes(20_000, seed=8)
    assert len(body) > LIMIT + 64 * 1024
    assert_error(client.post("/upload", **multipart(body)), 413)
    assert_error(client.post("/upload", data=body, content_type="text/csv"), 413)
    assert count(conn) == 0


def test_streamed_body_over_the_limit_is_413_and_nothing_is_inserted(client, conn):
    body = csv_bytes(20_000, seed=9)
    response = client.post(
        "/upload",
        input_stream=io.BytesIO(body),
        content_type="text/csv",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_error(response, 413)
    assert count(conn) == 0
    status = conn.execute("SELECT status FROM lab.uploads").fetchall()
    assert status == [("failed",)]


def test_database_unavailable_is_503_with_retry_after():
    app = make_app("postgresql://postgres@127.0.0.1:1/lab?connect_timeout=1")
    app.config["POOL_TIMEOUT"] = 0.5
    try:
        client = app.test_client()
        for response in (
            client.post("/upload", **multipart(csv_bytes(5))),
            client.get("/readyz"),
            client.get(f"/uploads/{uuid.uuid4()}"),
        ):
            assert_error(response, 503, "db_unavailable")
            assert int(response.headers["Retry-After"]) > 0
        assert client.get("/healthz").status_code == 200
    finally:
        close_db(app)


# -- whatever the input, never a 500 ---------------------------------------------------------

_STATUSES = {201, 400, 404, 413, 415, 422}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=2000),
        st.lists(
            st.sampled_from([",".join(HEADER), "1,x", '"', "\r", "\x00", "é", "", ",,,,"]),
            max_size=8,
        ).map(lambda parts: "\n".join(parts).encode()),
    ),
    as_multipart=st.booleans(),
    table=st.sampled_from(["records", "records_unlogged", "x", "..", "%00", "ré"]),
    strategy=st.one_of(st.none(), st.sampled_from(strategies.names()), st.text(max_size=10)),
)
def test_any_input_gets_a_json_answer_never_a_500(app, body, as_multipart, table, strategy):
    client = app.test_client()
    query = {} if strategy is None else {"strategy": strategy}
    kwargs = multipart(body) if as_multipart else {"data": body, "content_type": "text/csv"}
    response = client.post(f"/tables/{table}/upload", query_string=query, **kwargs)
    assert response.status_code in _STATUSES, response.get_data(as_text=True)
    if response.status_code != 201:
        assert_error(response, response.status_code)
