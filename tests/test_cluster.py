"""The embedded cluster: start, reuse, stop, recover from a crash, refuse a busy port."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import psutil
import psycopg
import pytest

from lab.cluster import INGEST_SETTINGS, EmbeddedCluster
from lab.errors import LabError
from tests.conftest import cluster_home

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="exercises the embedded cluster only"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(cluster_home())
    c.up()
    yield c
    c.destroy()


def test_up_twice_reuses_the_running_server(cluster: EmbeddedCluster) -> None:
    first = cluster.status()
    again = cluster.up()
    assert first.running and again.running
    assert again.pid == first.pid and again.port == first.port


def test_reachable_on_socket_and_tcp_with_ingest_settings(cluster: EmbeddedCluster) -> None:
    for url in (cluster.url(), cluster.url(tcp=True)):
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("minimal",)
            assert conn.execute("SHOW max_wal_senders").fetchone() == ("0",)
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            assert preload is not None and "pg_stat_statements" in str(preload[0])
            assert conn.execute("SHOW pg_stat_statements.track_utility").fetchone() == ("on",)
    assert "127.0.0.1" in cluster.url(tcp=True)
    assert {"shared_buffers", "synchronous_commit", "max_wal_size", "checkpoint_timeout"} <= set(
        INGEST_SETTINGS
    )


def test_runs_as_unprivileged_user_when_root(cluster: EmbeddedCluster) -> None:
    owner = psutil.Process(cluster.status().pid).username()
    if os.geteuid() == 0:
        assert owner == "embedded_postgres"
    else:
        assert owner == psutil.Process().username()


def test_down_stops_and_up_restarts(cluster: EmbeddedCluster) -> None:
    assert cluster.down() is True
    assert cluster.status().running is False
    assert cluster.down() is False
    assert cluster.up().running


def test_sigkilled_postmaster_is_recovered(cluster: EmbeddedCluster) -> None:
    pid = cluster.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cluster.status().running is False
    assert (cluster.pgdata / "postmaster.pid").exists()  # stale, left by the crash
    status = cluster.up()
    assert status.running and status.pid != pid
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = EmbeddedCluster(cluster_home())
        with pytest.raises(LabError, match=f"port {port} .*in use"):
            other.up(port)
    other.destroy()
