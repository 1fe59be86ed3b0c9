"""Small pieces every strategy shares: counting input bytes, pinning the session, the
server clock, and the catalog check that precedes any load."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO, cast

import psycopg

from strategies import catalog
from strategies.catalog import Column, Target
from strategies.header import read_header
from strategies.pgtypes import SESSION_SETTINGS

Conn = psycopg.Connection[tuple[object, ...]]

#: The server's wall clock in milliseconds (``clock_timestamp()``, not the transaction start).
CLOCK_SQL = "SELECT extract(epoch FROM clock_timestamp()) * 1000"

# 128 KiB writes into COPY: below ~32 KiB the per-write overhead shows in the in-DB time
# of psycopg-text; above 1 MiB nothing more is gained and each load holds more memory.
CHUNK_BYTES = 128 * 1024


class CountingReader(io.RawIOBase):
    """Wraps the upload stream and counts the bytes read from it."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self.count = 0

    @property
    def stream(self) -> BinaryIO:
        """This reader, typed as the binary stream it behaves as."""
        return cast(BinaryIO, self)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._source.read(-1 if size is None else size)
        self.count += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = self._source.readline(-1 if size is None else size)
        self.count += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def server_clock_ms(conn: Conn) -> float:
    row = conn.execute(CLOCK_SQL).fetchone()
    assert row is not None
    return float(row[0])  # type: ignore[arg-type]


def pin_session(conn: Conn) -> None:
    """Apply ``SESSION_SETTINGS`` for the current transaction only (``SET LOCAL``)."""
    for name, value in SESSION_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


@dataclass(frozen=True)
class Plan:
    """A checked target: the table, and its columns in the upload's header order."""

    target: Target
    names: list[str]

    @property
    def columns(self) -> list[Column]:
        by_name = {c.name: c for c in self.target.columns}
        return [by_name[n] for n in self.names]


def plan(conn: Conn, source: BinaryIO, table: str) -> Plan:
    """Resolve ``table`` and check the header against it, before any row is read."""
    target = catalog.resolve(conn, table)
    names = catalog.match_header(read_header(source), target)
    if not conn.autocommit:
        # End the catalog queries' implicit transaction: the load's ``transaction()``
        # block must be the real transaction, not a savepoint inside this one.
        conn.rollback()
    return Plan(target, names)
