"""Request bodies into readable CSV streams, without ever holding a body whole in memory.

* A raw ``text/csv`` body is read straight off the socket as the strategy consumes it.
* A ``multipart/form-data`` body is parsed incrementally (streaming-form-data, a C
  parser) and its ``file`` part spooled: in memory up to ``spool_bytes``, then on disk.

Both count and SHA-256 the CSV bytes as they pass and refuse a body over the size limit
(413) as soon as it is exceeded, whatever the Content-Length claimed.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass, field
from typing import IO, BinaryIO

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget
from werkzeug.exceptions import ClientDisconnected

from lab.errors import LabError

try:  # what gunicorn raises for a broken chunked body; other servers raise OSError
    from gunicorn.http.errors import ParseException as _BodyParseError
except ImportError:  # pragma: no cover - gunicorn is a dependency of the service

    class _BodyParseError(Exception):  # type: ignore[no-redef]
        pass


#: Socket reads of 256 KiB. Measured here (28 MB multipart body, parse + SHA-256 + spool,
#: best of 3, shared 2-core machine): 16 KiB 441 MB/s, 64 KiB 502, 256 KiB 548, 1 MiB
#: 559. Beyond 256 KiB little is gained, and each upload thread holds one read's worth.
READ_BYTES = 256 * 1024
#: The multipart field that carries the CSV (``curl -F file=@data.csv``).
FILE_FIELD = "file"
MULTIPART = "multipart/form-data"
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})


def read_body(stream: IO[bytes], size: int) -> bytes:
    """``stream.read(size)``; a body the client broke off (reset connection, a chunked body
    cut mid-chunk) is the client's failure: 400 ``incomplete_body``, never a 500."""
    try:
        return stream.read(size)
    except (OSError, _BodyParseError, ClientDisconnected) as exc:
        raise LabError(
            f"the request body broke off ({type(exc).__name__}); nothing was loaded",
            code="incomplete_body",
        ) from None


def too_large(limit: int) -> LabError:
    return LabError(f"the upload exceeds the limit of {limit} bytes", code="too_large", status=413)


@dataclass
class Digest:
    """Running byte count and SHA-256 of the CSV content."""

    nbytes: int = 0
    _sha: hashlib._Hash = field(default_factory=hashlib.sha256)

    def update(self, data: bytes | memoryview) -> None:
        self.nbytes += len(data)
        self._sha.update(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class _RawBody(io.RawIOBase):
    """The request stream as a raw file: counted, hashed and size-checked while read."""

    def __init__(self, stream: IO[bytes], digest: Digest, limit: int, expected: int | None) -> None:
        self._stream = stream
        self._digest = digest
        self._limit = limit
        self._expected = expected

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = read_body(self._stream, len(buffer))
        n = len(data)
        if n:
            self._digest.update(data)
            if self._digest.nbytes > self._limit:
                raise too_large(self._limit)
            buffer[:n] = data
        elif self._expected is not None and self._digest.nbytes < self._expected:
            # gunicorn hands out a short body silently when the client goes away; a cut
            # at a line boundary would otherwise load as valid, incomplete CSV.
            raise LabError(
                f"the body ended after {self._digest.nbytes} of {self._expected} bytes "
                "(Content-Length); nothing was loaded",
                code="incomplete_body",
            )
        return n


def raw_source(
    stream: IO[bytes], digest: Digest, limit: int, expected: int | None = None
) -> BinaryIO:
    """A buffered reader over a raw CSV body (readline for the header, read for COPY).

    ``expected`` is the Content-Length, when the client sent one.
    """
    return io.BufferedReader(_RawBody(stream, digest, limit, expected), READ_BYTES)


def spool(source: BinaryIO, spool_bytes: int) -> BinaryIO:
    """Copy a whole stream into a spooled temporary file, rewound (the caller closes it)."""
    spooled = tempfile.SpooledTemporaryFile(max_size=spool_bytes, prefix="lab-upload-")  # noqa: SIM115
    try:
        while chunk := source.read(READ_BYTES):
            spooled.write(chunk)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled  # type: ignore[return-value]


class _SpoolTarget(BaseTarget):  # type: ignore[misc]
    """Receives the ``file`` part: into the spool and the digest, chunk by chunk."""

    def __init__(self, spool: IO[bytes], digest: Digest, limit: int) -> None:
        super().__init__()
        self._spool = spool
        self._digest = digest
        self._limit = limit
        self.complete = False
        self.seen = False

    def on_start(self) -> None:
        self.seen = True

    def on_data_received(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        if self._digest.nbytes > self._limit:
            raise too_large(self._limit)
        self._spool.write(chunk)

    def on_finish(self) -> None:
        self.complete = True


def spool_multipart(
    stream: IO[bytes], content_type: str, digest: Digest, *, limit: int, spool_bytes: int
) -> BinaryIO:
    """Parse a multipart body as it arrives; returns its ``file`` part, rewound.

    The caller closes the returned file (a spooled temporary file, deleted on close).
    """
    spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes, prefix="lab-upload-")  # noqa: SIM115
    try:
        target = _SpoolTarget(spool, digest, limit)
        try:
            parser = StreamingFormDataParser(headers={"Content-Type": content_type})
            parser.register(FILE_FIELD, target)
            received = 0
            while chunk := read_body(stream, READ_BYTES):
                received += len(chunk)
                # The envelope (boundaries, other fields) counts against the limit too.
                if received > limit + 64 * 1024:
                    raise too_large(limit)
                parser.data_received(chunk)
        except ParseFailedException as exc:
            raise LabError(f"malformed multipart body: {exc}", code="bad_multipart") from None
        if not target.seen:
            raise LabError(
                f"the multipart body has no {FILE_FIELD!r} field (use -F {FILE_FIELD}=@data.csv)",
                code="missing_file",
            )
        if not target.complete:
            raise LabError(
                "the multipart body ended before its closing boundary", code="bad_multipart"
            )
        spool.seek(0)
        return spool  # type: ignore[return-value]
    except BaseException:
        spool.close()
        raise
