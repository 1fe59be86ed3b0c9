"""A 1 GiB upload through real gunicorn keeps the worker's memory flat.

The body is generated while it is sent (never built in memory here either), and the
worker's peak RSS is read from the kernel: ``/proc/<pid>/clear_refs`` resets the
high-water mark after a warm-up, ``VmHWM`` afterwards is the peak during the upload.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lab.fakedata import HEADER, csv_bytes
from service.stack import running_stack

GIB = 1024**3
MIB = 1024**2
#: The budget from the issue: peak RSS growth of the worker during a 1 GiB upload.
MAX_GROWTH = 100 * MIB
TABLE = "records_unlogged"  # no WAL: the test spends its time on the service, not on fsync


def _status_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    assert match, f"{field} missing from /proc/{pid}/status"
    return int(match[1])


def _reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _block() -> bytes:
    """About 1 MiB of whole CSV lines (no header), repeated to make the body."""
    data = csv_bytes(8000, seed=11, quote_share=0)
    data = data[data.index(b"\n") + 1 :]
    return data[: data.rindex(b"\n", 0, MIB) + 1]


def _send(url: str, path: str, content_type: str, parts: Iterator[bytes], length: int) -> dict:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=900)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        for part in parts:
            conn.send(part)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 201, body[:500]
        return json.loads(body)  # type: ignore[no-any-return]
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_one_gib_multipart_upload_keeps_worker_rss_flat(db_url, conn, tmp_path):
    block = _block()
    repeats = GIB // len(block) + 1
    boundary = "lab-memory-test-boundary"
    head = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + ",".join(HEADER).encode()
        + b"\n"
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    csv_size = len(head) - head.index(b"id,") + repeats * len(block)
    length = len(head) + repeats * len(block) + len(tail)
    assert csv_size > GIB

    def parts() -> Iterator[bytes]:
        yield head
        for _ in range(repeats):
            yield block
        yield tail

    with running_stack(db_url, workers=1, nginx=False, home=tmp_path) as stack:
        (worker,) = psutil.Process(stack.gunicorn_pid).children()
        # Warm-up: imports, the pool's connections, the first spool.
        small = csv_bytes(1000, seed=12)
        warm = head[: head.index(b"id,")] + small + tail
        _send(
            stack.http_url,
            f"/tables/{TABLE}/upload",
            f"multipart/form-data; boundary={boundary}",
            iter([warm]),
            len(warm),
        )
        baseline = _status_kib(worker.pid, "VmRSS") * 1024
        exact = _reset_peak(worker.pid)

        result = _send(
            stack.http_url,
            f"/tables/{TABLE}/upload",
            f"multipart/form-data; boundary={boundary}",
            parts(),
            length,
        )

        peak = _status_kib(worker.pid, "VmHWM") * 1024
        growth = peak - baseline
        print(
            f"\n1 GiB upload: {result['rows']} rows, {result['bytes']} bytes, "
            f"worker RSS baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB "
            f"(growth {growth / MIB:.1f} MiB, {'reset' if exact else 'since start'}), "
            f"timings {result['timings']}"
        )
    try:
        assert result["rows"] == repeats * block.count(b"\n")
        assert result["bytes"] == csv_size
        assert growth < MAX_GROWTH
        (count,) = conn.execute(f"SELECT count(*) FROM ingest.{TABLE}").fetchone()
        assert count == 1000 + result["rows"]
    finally:
        conn.execute(f"TRUNCATE ingest.{TABLE}")
