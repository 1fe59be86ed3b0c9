"""Small HTTP client helpers for the hardening tests (stdlib only, a timeout on every call)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Hang detection only: no call in these tests legitimately takes this long.
TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        try:
            return str(self.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return None


def address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def request(
    url: str,
    method: str = "GET",
    path: str = "/",
    *,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    ca_file: Path | None = None,
    chunked: bool = False,
    timeout: float = TIMEOUT_S,
) -> Answer:
    host, port = address(url)
    conn: http.client.HTTPConnection
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}), encode_chunked=chunked)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def upload(
    url: str,
    csv: bytes,
    *,
    path: str = "/upload",
    token: str | None = None,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    ca_file: Path | None = None,
    timeout: float = TIMEOUT_S,
) -> Answer:
    """POST a raw text/csv body."""
    all_headers = {"Content-Type": "text/csv", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        all_headers["Idempotency-Key"] = key
    return request(
        url, "POST", path, body=csv, headers=all_headers, ca_file=ca_file, timeout=timeout
    )


def multipart(csv: bytes, boundary: str = "harden-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body with ``csv`` as its ``file`` part, and its content type."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + csv + tail, f"multipart/form-data; boundary={boundary}"


def count(conn: Any, table: str = "records") -> int:
    return int(conn.execute(f"SELECT count(*) FROM ingest.{table}").fetchone()[0])


def ledger(conn: Any) -> list[tuple[Any, ...]]:
    """(status, error code, rows) of every ledger row, oldest first."""
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT status, error->'error'->>'code', rows FROM lab.uploads ORDER BY created_at"
        ).fetchall()
    ]


def audit(conn: Any, table: str = "records") -> None:
    """Rows in the table == rows of succeeded ledger rows for it; nothing left loading."""
    (succeeded,) = conn.execute(
        "SELECT coalesce(sum(rows), 0) FROM lab.uploads"
        " WHERE status = 'succeeded' AND target_table = %s",
        (table,),
    ).fetchone()
    assert count(conn, table) == succeeded


class SlowUpload:
    """A raw-socket POST whose body is sent in parts, under the test's control."""

    def __init__(
        self,
        url: str,
        body: bytes,
        *,
        path: str = "/upload",
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/csv",
    ) -> None:
        self.body = body
        self.sent = 0
        self.sock = socket.create_connection(address(url), timeout=TIMEOUT_S)
        lines = [
            f"POST {path} HTTP/1.1",
            "Host: test",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, nbytes: int) -> None:
        part = self.body[self.sent : self.sent + nbytes]
        self.sock.sendall(part)
        self.sent += len(part)

    def finish(self) -> Answer:
        self.send(len(self.body))
        return self.answer()

    def answer(self) -> Answer:
        """Read the whole response (the server closes: Connection: close)."""
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Answer(int(status_line.split()[1]), headers, body)

    def close(self) -> None:
        self.sock.close()
