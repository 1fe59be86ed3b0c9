"""Faults with real processes: clients vanishing mid-body, a gunicorn worker SIGKILLed
mid-COPY, PostgreSQL restarted mid-upload, statement_timeout, an exhausted connection pool.

Each must leave no partial rows, the attempt's ledger row 'failed' (by the request itself,
or by the reaper once the owner is gone), and the same gunicorn master serving the next
upload without a restart.
"""

from __future__ import annotations

import signal
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg
import pytest

import strategies
from lab.cluster import EmbeddedCluster
from lab.fakedata import csv_bytes
from service.errors import public_error
from service.stack import running_stack
from tests.conftest import cluster_home, fresh_database
from tests.harden_http import SlowUpload, address, audit, count, multipart, request, upload

#: Hang detection for polling loops (never a speed expectation).
WAIT_S = 60.0


def wait_for(what: str, condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(db_url, tmp_path_factory):
    with running_stack(db_url, workers=1, nginx=False, home=tmp_path_factory.mktemp("h")) as s:
        yield s


@pytest.fixture
def clean(conn):
    conn.execute("TRUNCATE ingest.records, lab.uploads")
    return conn


def statuses(conn) -> list[tuple[str, str | None]]:
    return [
        (str(r[0]), r[1])
        for r in conn.execute(
            "SELECT status, error->'error'->>'code' FROM lab.uploads ORDER BY created_at"
        ).fetchall()
    ]


def copy_running(url: str) -> bool:
    """A COPY into an ingest table is in progress on the server (in this database)."""
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query ILIKE 'COPY %% FROM STDIN%%'"
        ).fetchone()
    return bool(row and row[0])


def still_serving(url: str, master_pid: int) -> None:
    """The same master answers (a worker may have been respawned), and a new upload loads."""
    wait_for("/healthz", lambda: _status(url, "/healthz") == 200)
    assert psutil.Process(master_pid).is_running()
    answer = upload(url, csv_bytes(100, seed=99))
    assert answer.status == 201, answer.body


def _status(url: str, path: str) -> int:
    try:
        return request(url, path=path, timeout=5).status
    except OSError:
        return 0


# -- the client goes away mid-body ---------------------------------------------------------


def _cut_request(url: str, kind: str, body: bytes) -> socket.socket:
    """Send headers and about half the body (cut mid-line), then stop."""
    sock = socket.create_connection(address(url), timeout=WAIT_S)
    half = len(body) // 2
    if kind == "multipart":
        data, content_type = multipart(body)
        head = f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        payload = data[: len(data) // 2]
    elif kind == "chunked":
        head = "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n"
        chunk = body[:half]
        # Announce a chunk of the whole rest, then send only part of it.
        payload = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        payload += f"{len(body) - half:x}\r\n".encode() + body[half : half + 1000]
    else:
        head = f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n"
        payload = body[:half]
    sock.sendall(f"POST /upload HTTP/1.1\r\nHost: test\r\n{head}\r\n".encode() + payload)
    return sock


@pytest.mark.parametrize("kind", ["raw", "multipart", "chunked"])
@pytest.mark.parametrize("how", ["eof", "reset"])
def test_client_going_away_mid_body(stack, clean, kind, how):
    body = csv_bytes(20_000, seed=21)
    sock = _cut_request(stack.http_url, kind, body)
    wait_for("the attempt to start", lambda: statuses(clean) == [("loading", None)])
    if how == "eof":
        sock.shutdown(socket.SHUT_WR)  # the body ends early; the answer can still be read
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.split(b" ", 2)[1] == b"400", answer[:300]
        expected = b"bad_multipart" if kind == "multipart" else b"incomplete_body"
        assert expected in answer
    else:  # RST: the connection is gone, nobody reads an answer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_for("the attempt to fail", lambda: statuses(clean)[0][0] == "failed")
    assert statuses(clean)[0][1] in {"incomplete_body", "bad_multipart"}
    assert count(clean) == 0
    still_serving(stack.http_url, stack.gunicorn_pid)
    audit(clean)


# -- a worker SIGKILLed mid-load -------------------------------------------------------------


@pytest.mark.parametrize("strategy", strategies.names())
def test_worker_sigkilled_mid_copy(stack, db_url, clean, strategy):
    """PostgreSQL rolls the dead worker's transaction back; the lease lock goes with its
    connection, so the reaper fails the attempt; gunicorn's master starts a new worker."""
    streaming = strategies.get(strategy).streaming
    body = csv_bytes(30_000, seed=31)
    master = psutil.Process(stack.gunicorn_pid)
    slow = SlowUpload(stack.http_url, body, path=f"/upload?strategy={strategy}")
    try:
        slow.send(len(body) // 2)
        wait_for("the attempt to start", lambda: statuses(clean) == [("loading", None)])
        if streaming:  # the rows are on their way into the table
            wait_for("COPY to run", lambda: copy_running(db_url))
        (victim,) = master.children()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=WAIT_S)
    finally:
        slow.close()
    wait_for("a new worker", lambda: len(master.children()) == 1)
    # /readyz (or the next upload) reaps the orphaned attempt.
    wait_for(
        "the reaper",
        lambda: _status(stack.http_url, "/readyz") == 200 and statuses(clean)[0][0] == "failed",
    )
    assert statuses(clean) == [("failed", "orphaned")]
    assert count(clean) == 0
    still_serving(stack.http_url, stack.gunicorn_pid)
    audit(clean)


# -- statement_timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["psycopg-text", "asyncpg-copy"])
def test_statement_timeout_is_504_and_loads_nothing(db_url, clean, tmp_path, strategy):
    """A COPY that outlives LAB_STATEMENT_TIMEOUT_MS (here: its client pauses) is cancelled
    by PostgreSQL; the client gets 504 statement_timeout and the attempt is failed. The
    limit reaches every driver (asyncpg takes it from the connection string's options)."""
    env = {"LAB_STATEMENT_TIMEOUT_MS": "300"}
    with running_stack(db_url, workers=1, nginx=False, home=tmp_path, env=env) as s:
        body = csv_bytes(20_000, seed=41)
        slow = SlowUpload(s.http_url, body, path=f"/upload?strategy={strategy}")
        try:
            slow.send(len(body) // 3)
            wait_for("COPY to run", lambda: copy_running(db_url))
            time.sleep(1.0)  # the statement now runs longer than its 300 ms limit
            answer = slow.finish()
        finally:
            slow.close()
        assert answer.status == 504, answer.body
        assert answer.code == "statement_timeout"
        assert count(clean) == 0
        assert statuses(clean) == [("failed", "statement_timeout")]
        still_serving(s.http_url, s.gunicorn_pid)
        audit(clean)


# -- the pool exhausted ----------------------------------------------------------------------


def test_pool_exhaustion_waits_or_answers_503_and_never_hangs(db_url, clean, tmp_path):
    """One pooled connection per worker: while a slow upload holds it, others wait up to
    the pool timeout and get 503 with Retry-After; a burst that fits in time all loads."""
    env = {"LAB_POOL_SIZE": "1", "LAB_THREADS": "4"}
    with running_stack(db_url, workers=1, nginx=False, home=tmp_path, env=env) as s:
        held = csv_bytes(10_000, seed=51)
        slow = SlowUpload(s.http_url, held)
        try:
            slow.send(len(held) // 2)
            wait_for("COPY to hold the connection", lambda: copy_running(db_url))
            with ThreadPoolExecutor(max_workers=3) as pool:
                blocked = list(
                    pool.map(lambda i: upload(s.http_url, csv_bytes(200, seed=60 + i)), range(3))
                )
            first = slow.finish()
        finally:
            slow.close()
        assert first.status == 201, first.body
        for answer in blocked:
            assert answer.status == 503, answer.body
            assert answer.code == "db_unavailable"
            assert int(answer.headers["retry-after"]) > 0

        # A burst larger than the pool: requests queue for the connection and all load.
        with ThreadPoolExecutor(max_workers=6) as pool:
            burst = list(
                pool.map(lambda i: upload(s.http_url, csv_bytes(2000, seed=70 + i)), range(6))
            )
        assert [a.status for a in burst] == [201] * 6, [a.body[:200] for a in burst]
        assert count(clean) == 10_000 + 6 * 2000
        assert all(status != "loading" for status, _ in statuses(clean))
        audit(clean)
        still_serving(s.http_url, s.gunicorn_pid)


# -- PostgreSQL restarted mid-upload -----------------------------------------------------------


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster for this test alone: restarting it must not disturb other tests."""
    cluster = EmbeddedCluster(cluster_home())
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_restarted_mid_upload(own_cluster, tmp_path):
    url = fresh_database(own_cluster.url("postgres"), "t_harden_restart")
    body = csv_bytes(15_000, seed=81)
    tail = 50_000  # sent after the restart: small enough to be read in one go
    with running_stack(url, workers=1, nginx=False, home=tmp_path) as s:
        slow = SlowUpload(s.http_url, body)
        try:
            slow.send(len(body) - tail)
            wait_for("COPY to run", lambda: copy_running(url))
            own_cluster.down()  # fast shutdown: the loading backend is terminated
            own_cluster.up()
            answer = slow.finish()
        finally:
            slow.close()
        assert answer.status == 503, answer.body
        assert answer.code == "db_unavailable"
        assert int(answer.headers["retry-after"]) > 0
        # The pool and the lease reconnect; the reaper fails the attempt whose lock died
        # with the old server.
        wait_for("readiness", lambda: _status(s.http_url, "/readyz") == 200)
        still_serving(s.http_url, s.gunicorn_pid)
        # Restarted while idle: pooled and lease connections are all dead, and the very
        # next upload still loads (checked and reconnected, not a 503).
        own_cluster.down()
        own_cluster.up()
        time.sleep(1.5)  # past the lease's idle-ping threshold
        answer = upload(s.http_url, csv_bytes(100, seed=98))
        assert answer.status == 201, answer.body
        with psycopg.connect(url, autocommit=True) as conn:
            # Marked by the request itself if the lease reconnected in time, else reaped.
            assert statuses(conn)[0] in {("failed", "db_unavailable"), ("failed", "orphaned")}
            assert [st for st, _ in statuses(conn)] == ["failed", "succeeded", "succeeded"]
            assert count(conn) == 200
            audit(conn)


def test_other_drivers_faults_map_like_psycopgs():
    """Strategies on asyncpg or ADBC raise their driver's errors; by SQLSTATE they get the
    same answers as psycopg's (504 timeout, 503 unavailable), never a 500."""
    exceptions = pytest.importorskip("asyncpg.exceptions")
    cases = [
        (exceptions.QueryCanceledError("canceling statement due to statement timeout"), 504),
        (exceptions.AdminShutdownError("terminating connection due to administrator"), 503),
        (exceptions.ConnectionDoesNotExistError("connection was closed"), 503),
        (exceptions.TooManyConnectionsError("too many clients already"), 503),
    ]
    for exc, status in cases:
        error = public_error(exc)
        assert error is not None and error.status == status, exc
        assert error.code == ("statement_timeout" if status == 504 else "db_unavailable")
    assert public_error(exceptions.UniqueViolationError("duplicate key")) is None
