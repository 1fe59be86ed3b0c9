"""Behaviour only a real gunicorn shows: clients that go away, chunked bodies, concurrency."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.fakedata import csv_bytes
from service.stack import running_stack


@pytest.fixture(scope="module")
def stack(db_url, tmp_path_factory):
    with running_stack(db_url, workers=2, nginx=False, home=tmp_path_factory.mktemp("h")) as s:
        yield s


def _address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _count(conn) -> int:
    return conn.execute("SELECT count(*) FROM ingest.records").fetchone()[0]


def test_client_going_away_mid_body_loads_nothing(stack, conn):
    """Cut at a line boundary, the part received is valid CSV: it must still not load."""
    conn.execute("TRUNCATE ingest.records, lab.uploads")
    body = csv_bytes(20_000, seed=21, quote_share=0)
    cut = body.index(b"\n", len(body) // 2) + 1
    with socket.create_connection(_address(stack.http_url), timeout=30) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Type: text/csv\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:cut]
        )
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] == b"400", answer[:300]
    assert b"incomplete_body" in answer
    assert _count(conn) == 0
    rows = conn.execute("SELECT status, error->'error'->>'code' FROM lab.uploads").fetchall()
    assert rows == [("failed", "incomplete_body")]


def test_chunked_raw_body(stack, conn):
    conn.execute("TRUNCATE ingest.records")
    body = csv_bytes(5000, seed=22)
    conn_http = http.client.HTTPConnection(*_address(stack.http_url), timeout=60)
    try:
        pieces = (body[i : i + 7777] for i in range(0, len(body), 7777))
        conn_http.request(
            "POST",
            "/upload",
            body=pieces,
            headers={"Content-Type": "text/csv"},
            encode_chunked=True,
        )
        response = conn_http.getresponse()
        result = json.loads(response.read())
    finally:
        conn_http.close()
    assert response.status == 201, result
    assert result["rows"] == 5000 and result["bytes"] == len(body)
    assert _count(conn) == 5000


def test_concurrent_uploads_all_land(stack, conn):
    conn.execute("TRUNCATE ingest.records")
    bodies = [csv_bytes(2000, seed=100 + i) for i in range(8)]

    def post(body: bytes) -> tuple[int, dict]:
        c = http.client.HTTPConnection(*_address(stack.http_url), timeout=120)
        try:
            c.request("POST", "/upload", body=body, headers={"Content-Type": "text/csv"})
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(post, bodies))
    assert [status for status, _ in results] == [201] * 8
    assert len({r["upload_id"] for _, r in results}) == 8
    assert _count(conn) == 16_000


@pytest.mark.parametrize("strategy", ["psycopg-text", "parallel-text"])
def test_multipart_upload_streams_into_copy_before_the_body_ends(stack, db_url, conn, strategy):
    """A streaming strategy reads the multipart file part off the socket: the COPY is
    running while half the body has not been sent yet; then the rest lands in full."""
    import time

    import psycopg

    conn.execute("TRUNCATE ingest.records")
    csv = csv_bytes(20_000, seed=23)
    boundary = "lab-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="d.csv"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    body = head + csv + f"\r\n--{boundary}--\r\n".encode()
    cut = len(head) + len(csv) // 2

    def copy_running() -> bool:
        with psycopg.connect(db_url, autocommit=True) as c:
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND query ILIKE 'COPY %% FROM STDIN%%'"
            ).fetchone()
        return bool(row and row[0])

    with socket.create_connection(_address(stack.http_url), timeout=60) as sock:
        sock.sendall(
            f"POST /upload?strategy={strategy} HTTP/1.1\r\nHost: test\r\n".encode()
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:cut]
        )
        deadline = time.monotonic() + 30
        while not copy_running():
            assert time.monotonic() < deadline, "no COPY started while the body was open"
            time.sleep(0.05)
        assert _count(conn) == 0
        sock.sendall(body[cut:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.split(b" ", 2)[1] == b"201", answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["rows"] == 20_000
    assert _count(conn) == 20_000
