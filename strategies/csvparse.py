"""PostgreSQL's CSV reading rules in Python: records, fields, NULLs and line numbers.

Pure logic over a byte stream, no database. It mirrors ``COPY … FROM (FORMAT csv)`` so
client-side strategies accept, reject and number exactly what the server would:

* The end of line is fixed by the first record (``\\n``, ``\\r\\n`` or ``\\r``); an
  unquoted line-ending character of another kind is an error.
* A field is any mix of unquoted text and quoted segments (``""`` inside quotes is one
  quote). An unquoted empty field is NULL; ``""`` is the empty string.
* Line numbers count like the server: the header is line 1, each record adds one, and a
  line break inside quotes adds one more (so a record is numbered by its last line). Like
  the server, breaks inside the first record count only if they are ``\r``: its line
  ending is not known yet while it is read.
* Invalid UTF-8 and NUL bytes are refused at the line holding them.

Errors are ``LabError`` (code ``bad_csv``; 400 for malformed CSV) with the line and, when
known, the column.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import BinaryIO

from lab.errors import LabError

# 64 KiB reads: the per-read overhead is already negligible here, and a decoded chunk
# holding one emoji becomes a 4-bytes-per-character str: with 1 MiB reads tracemalloc
# showed encoding a 10 MB generated upload peak at 15 MB; with 256 KiB, 5.4 MB.
READ_BYTES = 64 * 1024

# One record's body: unquoted runs and balanced quoted segments, up to an unquoted EOL.
_RECORD = re.compile(r'[^"\r\n]*(?:"[^"]*"[^"\r\n]*)*')
# One field of a record body that holds quotes.
_FIELD = re.compile(r'[^,"]*(?:"[^"]*"[^,"]*)*')
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_BAD = re.compile("[\x00\udc80-\udcff]")

Record = list[str | None]


def bad_csv(reason: str, line: int | None, column: str | None = None) -> LabError:
    return LabError(reason, code="bad_csv", status=400, line=line, column=column)


def _unquote(raw: str) -> str:
    return _QUOTED.sub(lambda m: m[1].replace('""', '"'), raw)


def split_fields(body: str) -> Record:
    """The fields of one record body (no EOL): NULL for unquoted empty fields."""
    if '"' not in body:
        return [f or None for f in body.split(",")]
    fields: Record = []
    pos = 0
    while True:
        m = _FIELD.match(body, pos)
        assert m is not None  # the pattern matches the empty string
        raw = m[0]
        fields.append(_unquote(raw) if '"' in raw else raw or None)
        pos = m.end()
        if pos >= len(body):
            return fields
        pos += 1  # the comma


def _encoding_error(text: str, at: int, line: int) -> LabError:
    ch = text[at]
    byte = 0 if ch == "\x00" else ord(ch) - 0xDC00
    return bad_csv(f'invalid byte sequence for encoding "UTF8": 0x{byte:02x}', line)


def records(source: BinaryIO, *, first_line: int = 1) -> Iterator[tuple[int, Record]]:
    """Yield ``(line, fields)`` for each record of ``source`` (positioned after the header).

    ``first_line`` is the number of the line already consumed (the header).
    """
    for line, body in bodies(source, first_line=first_line):
        yield line, split_fields(body)


_PLAIN_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def regular(source: BinaryIO, width: int) -> bool:
    """True when ``source`` is CSV that plainer readers (pyarrow's) read as PostgreSQL does.

    That is: no error, every record has ``width`` fields, one line ending throughout, and
    every field is either unquoted or one quoted segment. Reads the stream to its end.
    """
    try:
        for _line, body in bodies(source):
            if '"' not in body:
                if body.count(",") + 1 != width:
                    return False
                continue
            fields = 0
            pos = 0
            while True:
                m = _FIELD.match(body, pos)
                assert m is not None
                raw = m[0]
                if '"' in raw and not _PLAIN_QUOTED.fullmatch(raw):
                    return False
                fields += 1
                pos = m.end() + 1
                if pos > len(body):
                    break
            if fields != width:
                return False
    except LabError:
        return False
    return True


def bodies(source: BinaryIO, *, first_line: int = 1) -> Iterator[tuple[int, str]]:
    """Yield ``(line, body)`` per record: the record's text without its line ending."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    buf = ""
    line = first_line
    eol = ""  # unknown until the first record ends
    eof = False
    # While a record is unfinished at the end of the buffer, new text that holds none of
    # the characters able to finish it is only collected, not re-scanned: re-matching the
    # whole record per read made one 8 MiB field take 12 s (quadratic); now it is linear.
    wait = ""
    pending: list[str] = []
    while not eof:
        chunk = source.read(READ_BYTES)
        eof = not chunk
        text = decoder.decode(chunk or b"", final=eof)
        if wait and not eof and not any(c in text for c in wait):
            pending.append(text)
            continue
        if pending:
            pending.append(text)
            text = "".join(pending)
            pending.clear()
        buf += text
        wait = ""
        bad = _BAD.search(buf)
        bad_at = bad.start() if bad else len(buf) + 1
        pos = 0
        size = len(buf)
        while pos < size:
            m = _RECORD.match(buf, pos)
            assert m is not None
            end = m.end()
            if end < size:
                term = buf[end]
                if term == '"':  # a quote that never closes (so far)
                    if not eof:
                        wait = '"'
                        break
                    # The server numbers the record by the lines it consumed before EOF.
                    line += 1 + buf.count("\n" if eol == "\n" else "\r", pos, size)
                    if bad_at < size:
                        raise _encoding_error(buf, bad_at, line)
                    raise bad_csv("unterminated CSV quoted field", line)
                if term == "\r":
                    if end + 1 == size and not eof:
                        break  # maybe a \r\n split across reads
                    term = "\r\n" if buf.startswith("\n", end + 1) else "\r"
            elif not eof:
                wait = "\r\n"
                break
            else:
                term = ""
            body = m[0]
            line += 1
            if '"' in body:
                line += body.count("\n" if eol == "\n" else "\r")
            if bad_at < end + len(term):
                raise _encoding_error(buf, bad_at, line)
            if term:
                if not eol:
                    eol = term
                elif term != eol:
                    newline = term == "\n" or eol == "\r"
                    raise bad_csv(
                        f"unquoted {'newline' if newline else 'carriage return'} found in data",
                        line,
                    )
            pos = end + len(term)
            yield line, body
        buf = buf[pos:]
    if buf:
        raise bad_csv("unterminated CSV quoted field", line)
