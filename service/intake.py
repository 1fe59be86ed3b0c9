"""Request bodies into readable CSV streams, without ever holding a body whole in memory.

* A raw ``text/csv`` body is read straight off the socket as the strategy consumes it.
* A ``multipart/form-data`` body is parsed incrementally (streaming-form-data, a C
  parser) as the strategy reads its ``file`` part: each read pulls the next piece of the
  body through the parser.
* Strategies that need a seekable input get either one spooled first: in memory up to
  ``spool_bytes``, then on disk.

Both count and SHA-256 the CSV bytes as they pass and refuse a body over the size limit
(413) as soon as it is exceeded, whatever the Content-Length claimed.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from collections import deque
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


class _FileTarget(BaseTarget):  # type: ignore[misc]
    """Receives the ``file`` part: into ``sink`` and the digest, chunk by chunk."""

    def __init__(self, sink: deque[bytes], digest: Digest, limit: int) -> None:
        super().__init__()
        self._sink = sink
        self._digest = digest
        self._limit = limit
        self.complete = False
        self.seen = False

    def on_start(self) -> None:
        if self.seen:
            # A second part would be appended to the first: refuse instead of guessing.
            raise LabError(
                f"the multipart body has more than one {FILE_FIELD!r} field; send one file",
                code="duplicate_file",
            )
        self.seen = True

    def on_data_received(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        if self._digest.nbytes > self._limit:
            raise too_large(self._limit)
        self._sink.append(chunk)

    def on_finish(self) -> None:
        self.complete = True


class _MultipartFile(io.RawIOBase):
    """The ``file`` part of a multipart body, parsed as it is read.

    Each read feeds the next piece of the body to the parser, which hands the part's
    bytes to ``_FileTarget``; what it found waits in a queue of at most one read's worth.
    A body without the part, or cut before its closing boundary, fails at its end, before
    the reader reports end of file: a strategy never commits such an upload.
    """

    def __init__(self, stream: IO[bytes], content_type: str, digest: Digest, limit: int) -> None:
        self._stream = stream
        self._content_type = content_type
        self._limit = limit
        self._received = 0
        self._chunks: deque[bytes] = deque()
        self._target = _FileTarget(self._chunks, digest, limit)
        self._parser: StreamingFormDataParser | None = None
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._chunks and not self._done:
            self._pump()
        if not self._chunks:
            return 0
        head = self._chunks[0]
        n = min(len(buffer), len(head))
        buffer[:n] = head[:n]
        if n == len(head):
            self._chunks.popleft()
        else:
            self._chunks[0] = head[n:]
        return n

    def _pump(self) -> None:
        try:
            if self._parser is None:
                self._parser = StreamingFormDataParser(headers={"Content-Type": self._content_type})
                self._parser.register(FILE_FIELD, self._target)
            chunk = read_body(self._stream, READ_BYTES)
            if chunk:
                self._received += len(chunk)
                # The envelope (boundaries, other fields) counts against the limit too.
                if self._received > self._limit + 64 * 1024:
                    raise too_large(self._limit)
                self._parser.data_received(chunk)
                return
        except ParseFailedException as exc:
            raise LabError(f"malformed multipart body: {exc}", code="bad_multipart") from None
        self._done = True
        if not self._target.seen:
            raise LabError(
                f"the multipart body has no {FILE_FIELD!r} field (use -F {FILE_FIELD}=@data.csv)",
                code="missing_file",
            )
        if not self._target.complete:
            raise LabError(
                "the multipart body ended before its closing boundary", code="bad_multipart"
            )


def multipart_source(
    stream: IO[bytes], content_type: str, digest: Digest, *, limit: int
) -> BinaryIO:
    """A buffered reader over the ``file`` part of a multipart body (see ``_MultipartFile``)."""
    return io.BufferedReader(_MultipartFile(stream, content_type, digest, limit), READ_BYTES)


#: Leading bytes of compressed or archive formats (gzip, zip/xlsx, bzip2, xz, zstd): such
#: a body is never CSV, and reading it as CSV would only yield a confusing encoding error.
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip (e.g. an .xlsx workbook)",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_MAGIC_BYTES = max(len(m) for m in _MAGIC)
_CR_BREAKS = re.compile(rb"\r\n?")
_ANY_BREAK = re.compile(rb"\r\n?|\n")


def compressed(head: bytes) -> str | None:
    """The compression format ``head`` starts with, if any."""
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


class _CsvBody(io.RawIOBase):
    """The CSV content with its unquoted line endings made uniform.

    PostgreSQL's COPY (and every strategy, which mirrors it) refuses a file mixing LF,
    CRLF and CR. Spreadsheet exports and concatenated files often do, so the service
    rewrites each unquoted line ending to the header's (LF when the header ends with a
    lone CR); quoted line breaks are data and stay as sent. Line numbers are unchanged:
    one break stays one break. Chunks holding only the header's kind of break (all of a
    clean file) pass through untouched after a count of their quotes.

    It also refuses compressed content (gzip, zip, ...) sent as CSV, with 415.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._eol = b""  # unknown until the header's line ending is seen
        self._quoted = False
        self._carry = b""  # a trailing CR that may be the start of a CRLF
        self._out = b""
        self._at = 0  # how much of _out was handed out
        self._started = False
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._at == len(self._out) and not self._eof:
            self._out, self._at = self._next(), 0
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = memoryview(self._out)[self._at : self._at + n]
        self._at += n
        return n

    def _next(self) -> bytes:
        chunk = self._carry + self._source.read(READ_BYTES)
        self._carry = b""
        if not self._started:
            while len(chunk) < _MAGIC_BYTES and (more := self._source.read(READ_BYTES)):
                chunk += more
            self._started = True
            kind = compressed(chunk)
            if kind:
                raise LabError(
                    f"the body is {kind}-compressed, not CSV: send the CSV uncompressed",
                    code="compressed_body",
                    status=415,
                )
        if not chunk:
            self._eof = True
            return b""
        if chunk.endswith(b"\r"):
            more = self._source.read(1)
            if more:
                chunk += more
                if more == b"\r":
                    self._carry, chunk = b"\r", chunk[:-1]
        if not self._eol:
            self._eol = self._header_eol(chunk)
        return self._normalize(chunk)

    @staticmethod
    def _header_eol(chunk: bytes) -> bytes:
        at = min((i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0), default=-1)
        if at < 0:
            return b""
        return b"\r\n" if chunk.startswith(b"\r\n", at) else b"\n"

    def _normalize(self, chunk: bytes) -> bytes:
        eol = self._eol
        clean = (
            b"\r" not in chunk
            if eol != b"\r\n"
            else chunk.count(b"\r") == chunk.count(b"\n") == chunk.count(b"\r\n")
        )
        if clean or not eol:
            self._quoted ^= bool(chunk.count(b'"') & 1)
            return chunk
        # Visit only the breaks that may need rewriting; the quotes before each one say
        # whether it is quoted (data, kept) or a line ending (made ``eol``).
        quoted = self._quoted
        out = []
        counted = copied = 0
        for m in (_CR_BREAKS if eol == b"\n" else _ANY_BREAK).finditer(chunk):
            start = m.start()
            quoted ^= bool(chunk.count(b'"', counted, start) & 1)
            counted = start
            if quoted or m[0] == eol:
                continue
            out.append(chunk[copied:start])
            out.append(eol)
            copied = m.end()
        self._quoted = quoted ^ bool(chunk.count(b'"', counted) & 1)
        out.append(chunk[copied:])
        return b"".join(out)


def csv_body(source: BinaryIO) -> BinaryIO:
    """``source`` checked for compression and with uniform line endings (see ``_CsvBody``)."""
    return io.BufferedReader(_CsvBody(source), READ_BYTES)
