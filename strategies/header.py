"""Reading the CSV header line off a byte stream (pure logic, no database)."""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

from lab.errors import LabError

BOM = b"\xef\xbb\xbf"
#: A header longer than this is not a header; refuse instead of reading a huge line.
MAX_HEADER_BYTES = 64 * 1024


def read_header(source: BinaryIO) -> list[str]:
    """Consume the header line (and a leading BOM) from ``source``; return its names.

    The stream is left positioned at the first data byte. Header names are taken as
    written, stripped of surrounding spaces; quoting follows CSV rules.
    """
    raw = source.readline(MAX_HEADER_BYTES + 1)
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    if not raw.strip():
        raise LabError("the upload is empty: expected a CSV header line", code="empty", line=1)
    if len(raw) > MAX_HEADER_BYTES or (not raw.endswith(b"\n") and len(raw) == MAX_HEADER_BYTES):
        raise LabError("the header line is too long", code="bad_header", line=1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LabError("the header is not valid UTF-8", code="bad_encoding", line=1) from None
    if "\x00" in text:
        raise LabError("the header contains a NUL byte", code="bad_header", line=1)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise LabError(f"the header is not valid CSV: {exc}", code="bad_header", line=1) from None
    if len(rows) != 1:
        raise LabError("the header must be a single line", code="bad_header", line=1)
    return [name.strip() for name in rows[0]]
