"""Dealing a CSV byte stream out to N COPY streams, switching only between records.

Pure logic, no I/O (``parallel-text`` does the sending). A position is between records
when it follows a line feed outside quotes. With PostgreSQL's CSV defaults (quote and
escape both ``"``) its COPY reader toggles "inside quotes" on every quote character, so
the parity of the quotes seen so far is exactly its state: ``bytes.count`` finds
boundaries at C speed, without parsing fields.

Each COPY stream decides its own line ending from its first line, and numbers its lines
from 1. So the dealer

* starts a stream only with a record whose first line ends, outside quotes, in the chunk
  at hand and holds no carriage return (``_boundary``),
* stops switching for good at the first carriage return outside quotes or ``\\.`` it
  sees: from there on everything goes to one stream, exactly as one COPY of the whole
  file would read it (a CRLF file, whose first chunk has one, is never split), and
* remembers where each block it sent starts in the file and how many line feeds it
  holds, to turn a stream's line number back into the upload's (``line_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Bytes a stream gets before the dealer looks for a record boundary to switch. With two
# streams, 256 KiB and 1 MiB blocks loaded the 14 MB reference file in the same time
# within noise; smaller blocks keep a small upload's streams even (tuning log).
BLOCK_BYTES = 256 * 1024

# Line feeds inside quotes tried per chunk before giving up on a switch in that chunk
# (a huge quoted field then just stays in the current stream).
_MAX_TRIES = 64


@dataclass
class Block:
    """One run of bytes sent to one stream: where it starts in the upload, its line feeds."""

    first_line: int
    line_feeds: int = 0


class Dealer:
    """Cuts a CSV body into blocks at record boundaries and deals them round-robin."""

    def __init__(self, streams: int, first_line: int, block_bytes: int = BLOCK_BYTES) -> None:
        self.streams = streams
        self.block_bytes = block_bytes
        self.current = 0
        self.in_quotes = False
        self.pinned = streams == 1
        self.first_line = first_line
        self.line = first_line
        self.blocks: list[list[Block]] = [[] for _ in range(streams)]
        self.blocks[0].append(Block(first_line))
        self._filled = 0
        self._tail = b""
        # The upload's first record, as PostgreSQL counts it: before a stream's first line
        # break it does not yet know the line ending and counts quoted CRs, not LFs, as
        # lines. One COPY of the whole file numbers every later line by that count.
        self._first_open = True
        self._first_quoted = False
        self._first_lfs = 0
        self._first_crs = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """The pieces of ``chunk`` to send, as (stream, bytes), in order."""
        if self._first_open:
            self._scan_first(chunk)
        if not self.pinned and (self._bare_return(chunk) or self._end_marker(chunk)):
            self.pinned = True
        self._tail = chunk[-1:]
        out: list[tuple[int, bytes]] = []
        pos = 0
        while pos < len(chunk):
            cut = -1
            if not self.pinned:
                cut = self._boundary(chunk, pos + max(0, self.block_bytes - self._filled), pos)
            end = len(chunk) if cut < 0 else cut
            piece = chunk[pos:end]
            self._sent(piece)
            out.append((self.current, piece))
            pos = end
            if cut >= 0:
                self._switch()
        return out

    def line_of(self, stream: int, line: int) -> int:
        """The line one COPY of the whole upload would report for ``line`` of ``stream``.

        Stream 0 starts with the same bytes as the upload, so until its first block ends
        it counts as one COPY would. Every other stream begins with a one-line record after
        a bare LF (a switch implies both), and counts physical lines; one COPY's count
        differs from the physical one by the first record's skew from then on.
        """
        skew = self._first_lfs - self._first_crs
        head = self.blocks[0]
        if stream == 0 and (len(head) == 1 or line <= head[0].line_feeds - skew):
            return self.first_line + line - 1
        if stream == 0:
            line += skew  # back to physical lines within stream 0
        return self._physical(stream, line) - skew

    def _physical(self, stream: int, line: int) -> int:
        """The upload's physical line for physical line ``line`` of ``stream``."""
        seen = 0
        blocks = self.blocks[stream]
        for block in blocks[:-1]:
            if line <= seen + block.line_feeds:
                return block.first_line + line - seen - 1
            seen += block.line_feeds
        return blocks[-1].first_line + line - seen - 1 if blocks else line

    def _scan_first(self, chunk: bytes) -> None:
        """Follow the upload's first record: its quoted LFs and CRs, and where it ends."""
        quoted = self._first_quoted
        start = 0
        while (feed := chunk.find(b"\n", start)) >= 0:
            quoted ^= bool(chunk.count(b'"', start, feed) & 1)
            self._first_crs += chunk.count(b"\r", start, feed)
            if not quoted:
                self._first_open = False
                return
            self._first_lfs += 1
            start = feed + 1
        self._first_quoted = quoted ^ bool(chunk.count(b'"', start) & 1)
        self._first_crs += chunk.count(b"\r", start)

    def _bare_return(self, chunk: bytes) -> bool:
        """True when ``chunk`` has a carriage return outside quotes (a line ending)."""
        quoted = self.in_quotes
        pos = 0
        while (found := chunk.find(b"\r", pos)) >= 0:
            quoted ^= bool(chunk.count(b'"', pos, found) & 1)
            if not quoted:
                return True
            pos = found + 1
        return False

    def _end_marker(self, chunk: bytes) -> bool:
        """True when ``chunk`` may hold ``\\.`` (a single-byte search first: ``in`` with
        two bytes took 16 ms over the 14 MB reference file, ``find`` of one byte ~0), or
        ``\\`` at the end of the previous chunk and ``.`` at the start of this one."""
        if self._tail == b"\\" and chunk.startswith(b"."):
            return True
        return chunk.find(b"\\") >= 0 and b"\\." in chunk

    def _boundary(self, chunk: bytes, start: int, pos: int) -> int:
        """Index of a record start at or after ``start`` whose first line ends outside
        quotes within ``chunk``, or -1.

        PostgreSQL learns a stream's line ending at its first line break; before that it
        counts quoted carriage returns as lines and quoted line feeds not. So a stream must
        begin with a record of one line without a carriage return, or its line numbers
        would drift from the upload's.
        """
        if start >= len(chunk):
            return -1
        quoted = self.in_quotes ^ bool(chunk.count(b'"', pos, start) & 1)
        for _ in range(_MAX_TRIES):
            feed = chunk.find(b"\n", start)
            if feed < 0:
                return -1
            quoted ^= bool(chunk.count(b'"', start, feed) & 1)
            start = feed + 1
            if quoted:
                continue
            following = chunk.find(b"\n", start)
            if following < 0:
                return -1
            # Its first line ends outside quotes and holds no (quoted) carriage return:
            # before a stream's first line break PostgreSQL counts quoted CRs as lines.
            one_line = not chunk.count(b'"', start, following) & 1
            if one_line and chunk.find(b"\r", start, following) < 0:
                return start
        return -1

    def _sent(self, piece: bytes) -> None:
        self.in_quotes ^= bool(piece.count(b'"') & 1)
        feeds = piece.count(b"\n")
        self.blocks[self.current][-1].line_feeds += feeds
        self.line += feeds
        self._filled += len(piece)

    def _switch(self) -> None:
        self.current = (self.current + 1) % self.streams
        self.blocks[self.current].append(Block(self.line))
        self._filled = 0
