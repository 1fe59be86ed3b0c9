"""The HTTP client side of a benchmark upload: one multipart POST, timed on the client.

The multipart body is built once per file (``multipart_body``) so the client's wall time
covers the exchange with the service only, not assembling the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from urllib3 import encode_multipart_formdata


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str


@dataclass(frozen=True)
class UploadResult:
    """The service's 201 JSON plus the client's wall time of the request."""

    wall_ms: float
    rows: int
    bytes: int
    parse_ms: float
    in_db_ms: float
    commit_ms: float
    total_ms: float

    @property
    def http_ms(self) -> float:
        """What HTTP, multipart and the proxy cost on top of the server's own load time."""
        return self.wall_ms - self.total_ms


def multipart_body(file: Path) -> Body:
    data, content_type = encode_multipart_formdata(
        {"file": (file.name, file.read_bytes(), "text/csv")}
    )
    return Body(data, content_type)


def upload_url(base_url: str, table: str, strategy: str) -> str:
    return f"{base_url.rstrip('/')}/tables/{table}/upload?strategy={strategy}"


def upload(
    session: requests.Session,
    base_url: str,
    table: str,
    strategy: str,
    body: Body,
    *,
    verify: bool | str = True,
    timeout: float = 600,
) -> UploadResult:
    """POST the body; anything but 201 raises RuntimeError with the service's message."""
    started = time.perf_counter()
    response = session.post(
        upload_url(base_url, table, strategy),
        data=body.data,
        headers={"Content-Type": body.content_type},
        verify=verify,
        timeout=timeout,
    )
    wall_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        raise RuntimeError(f"HTTP {response.status_code}: {_error_text(response)}")
    doc: dict[str, Any] = response.json()
    timings = doc["timings"]
    return UploadResult(
        wall_ms=wall_ms,
        rows=int(doc["rows"]),
        bytes=int(doc["bytes"]),
        parse_ms=float(timings["parse_ms"]),
        in_db_ms=float(timings["in_db_ms"]),
        commit_ms=float(timings["commit_ms"]),
        total_ms=float(timings["total_ms"]),
    )


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") or error)[:300]
    except ValueError:
        return response.text[:300]
