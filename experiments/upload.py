"""The HTTP client side of a benchmark upload: one multipart POST, timed on the client.

The multipart body is built once per file (``multipart_body``) so the client's wall time
covers the exchange with the service only, not assembling the request. A file above
``IN_MEMORY_BYTES`` (the 10M-row scale file is ~1.4 GB) is streamed from disk between
its multipart framing instead of being held in memory.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from urllib3 import encode_multipart_formdata

#: Bodies up to this size are built in memory; bigger files are streamed (``Body.file``).
IN_MEMORY_BYTES = 64 * 1024 * 1024

# Pieces handed to the socket when streaming: http.client asks for 8 KiB at a time; 1 MiB
# pieces keep the client's per-call overhead out of a 1.4 GB upload.
STREAM_PIECE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Body:
    """A multipart body: ``data`` in memory, or ``head`` + the file + ``tail`` streamed."""

    data: bytes
    content_type: str
    file: Path | None = None
    head: bytes = b""
    tail: bytes = b""

    def payload(self) -> bytes | _Stream:
        return self.data if self.file is None else _Stream(self)


class _Stream:
    """The streamed body as requests wants it: ``read`` plus a length (Content-Length)."""

    def __init__(self, body: Body) -> None:
        assert body.file is not None
        self._length = len(body.head) + body.file.stat().st_size + len(body.tail)
        self._parts: list[BinaryIO] = [
            io.BytesIO(body.head),
            body.file.open("rb"),
            io.BytesIO(body.tail),
        ]

    def __len__(self) -> int:
        return self._length

    def close(self) -> None:
        """Close the file part (after a failed request it may still be open)."""
        for part in self._parts:
            part.close()
        self._parts = []

    def read(self, size: int = -1) -> bytes:
        while self._parts:
            chunk = self._parts[0].read(max(size, STREAM_PIECE_BYTES))
            if chunk:
                return chunk
            self._parts.pop(0).close()
        return b""


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
    if file.stat().st_size > IN_MEMORY_BYTES:
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        return Body(b"", f"multipart/form-data; boundary={boundary}", file, head, tail)
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
    payload = body.payload()
    started = time.perf_counter()
    try:
        response = session.post(
            upload_url(base_url, table, strategy),
            data=payload,
            headers={"Content-Type": body.content_type},
            verify=verify,
            timeout=timeout,
        )
    finally:
        if isinstance(payload, _Stream):
            payload.close()
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
