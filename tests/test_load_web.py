"""``lab load --web`` serves Locust's web UI on 127.0.0.1, runs a swarm, audits at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("service.stack")

from experiments.loadresults import load_section
from lab.config import PROJECT_ROOT
from service.stack import free_port


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode(errors="replace")


def test_web_command_serves_locust_and_audits_the_session(db_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",  # keep what it printed even if it has to be killed
    }
    command = [sys.executable, "-m", "lab.cli", "load", "--web", "--web-port", str(port)]
    command += ["--no-nginx", "--rows", "500", "--strategy-mix", "psycopg-text:1"]
    command += ["--out", str(tmp_path / "web")]
    proc = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        page = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, page = _get(base + "/")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert "<title>Locust" in page

        # Start a short swarm the way the page's form does; the shape ends it after 3 s.
        form = urllib.parse.urlencode({"user_count": 2, "spawn_rate": 2, "run_time": "3s"})
        with urllib.request.urlopen(base + "/swarm", data=form.encode(), timeout=10) as r:
            assert r.status == 200
        # Generous bounds (hang detection, not speed): on a loaded 2-core machine the
        # swarm's in-flight uploads can take long to finish.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            _, state = _get(base + "/stats/requests")
            if '"state": "stopped"' in state or '"state":"stopped"' in state:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    assert f"Locust web UI: http://127.0.0.1:{port}/" in output
    assert "audit: PASSED" in output, output
    assert proc.returncode == 0, output
    summary = load_section(tmp_path / "web")
    assert summary is not None and summary.requests > 0 and summary.failures == 0
    assert summary.rows == summary.rows_per_upload * (summary.requests - summary.rejected)
