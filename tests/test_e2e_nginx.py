"""End to end: curl → nginx (TLS) → gunicorn's Unix socket → PostgreSQL, all real.

Skipped only where nginx is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from lab.fakedata import write_csv
from service.stack import nginx_binary, running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

ROWS = 100_000


@pytest.fixture(scope="module")
def stack(db_url, tmp_path_factory):
    with running_stack(db_url, workers=2, home=tmp_path_factory.mktemp("home")) as info:
        assert info.https_url is not None and info.ca_file is not None
        yield info


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "test.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        write_csv(out, ROWS, seed=42)
    return path


def curl(stack, *args: str) -> subprocess.CompletedProcess[str]:
    """curl verifying nginx's certificate; prints the status code on the last line."""
    return subprocess.run(
        ["curl", "-sS", "--cacert", str(stack.ca_file), "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def split(proc: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


def test_100k_rows_multipart_through_nginx_over_tls(stack, csv_file, conn):
    conn.execute("TRUNCATE ingest.records, lab.uploads")
    status, body = split(curl(stack, "-F", f"file=@{csv_file}", f"{stack.https_url}/upload"))
    assert status == 201, body
    result = json.loads(body)
    assert result["rows"] == ROWS
    assert result["bytes"] == csv_file.stat().st_size
    (count,) = conn.execute("SELECT count(*) FROM ingest.records").fetchone()
    assert count == ROWS
    (ids,) = conn.execute("SELECT count(DISTINCT id) FROM ingest.records").fetchone()
    assert ids == ROWS
    ledger = conn.execute(
        "SELECT status, rows, bytes, target_table FROM lab.uploads WHERE upload_id = %s",
        (result["upload_id"],),
    ).fetchone()
    assert ledger == ("succeeded", ROWS, csv_file.stat().st_size, "records")

    status, body = split(curl(stack, f"{stack.https_url}/uploads/{result['upload_id']}"))
    assert status == 200 and json.loads(body)["status"] == "succeeded"


def test_raw_csv_body_through_nginx(stack, csv_file, conn):
    conn.execute("TRUNCATE ingest.records_pk")
    status, body = split(
        curl(
            stack,
            "-H",
            "Content-Type: text/csv",
            "--data-binary",
            f"@{csv_file}",
            f"{stack.https_url}/tables/records_pk/upload",
        )
    )
    assert status == 201, body
    (count,) = conn.execute("SELECT count(*) FROM ingest.records_pk").fetchone()
    assert count == ROWS


def test_chunked_raw_body_streams_through_unbuffered_nginx(stack, csv_file, conn):
    """No Content-Length: nginx (request buffering off, HTTP/1.1 upstream) passes the
    chunked body on as it arrives."""
    conn.execute("TRUNCATE ingest.records")
    status, body = split(
        curl(
            stack,
            "-H",
            "Content-Type: text/csv",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            f"@{csv_file}",
            f"{stack.https_url}/upload",
        )
    )
    assert status == 201, body
    assert json.loads(body)["bytes"] == csv_file.stat().st_size
    (count,) = conn.execute("SELECT count(*) FROM ingest.records").fetchone()
    assert count == ROWS


def test_head_and_get_on_upload_are_405_through_nginx(stack):
    proc = curl(stack, "-I", f"{stack.https_url}/upload")
    assert proc.stdout.splitlines()[0].split()[1] == "405"
    assert "allow: " in proc.stdout.lower() and "POST" in proc.stdout
    status, body = split(curl(stack, f"{stack.https_url}/upload"))
    assert status == 405
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_health_and_errors_pass_through_nginx(stack):
    assert split(curl(stack, f"{stack.https_url}/healthz"))[0] == 200
    assert split(curl(stack, f"{stack.https_url}/readyz"))[0] == 200
    status, body = split(
        curl(stack, "-H", "Content-Type: application/json", "-d", "{}", f"{stack.https_url}/upload")
    )
    assert status == 415 and json.loads(body)["error"]["code"] == "unsupported_media_type"


def test_plain_http_on_the_tcp_port_also_serves(stack, csv_file, conn):
    """The development port (gunicorn TCP), as in the README's curl example."""
    conn.execute("TRUNCATE ingest.records")
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-F",
            f"file=@{csv_file}",
            f"{stack.http_url}/upload",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    status, body = split(proc)
    assert status == 201, body
    assert json.loads(body)["rows"] == ROWS


def test_oversized_body_is_413_json_and_the_stack_leaves_no_processes(db_url, csv_file, tmp_path):
    """nginx refuses a body over client_max_body_size (rendered from the service's limit)
    before it reaches gunicorn; on exit nothing the stack started is left running."""
    limit = {"LAB_MAX_UPLOAD_BYTES": "100000"}
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with running_stack(db_url, workers=1, home=tmp_path, env=limit) as small:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        names = {p.name() for p in started}
        assert {"nginx"} <= names and small.gunicorn_pid in {p.pid for p in started}
        status, body = split(curl(small, "-F", f"file=@{csv_file}", f"{small.https_url}/upload"))
        assert status == 413
        assert json.loads(body)["error"]["code"] == "too_large"
        status, body = split(
            subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-w",
                    "\n%{http_code}",
                    "-F",
                    f"file=@{csv_file}",
                    f"{small.http_url}/upload",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
        )
        assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    _, alive = psutil.wait_procs(started, timeout=5)
    assert alive == []
