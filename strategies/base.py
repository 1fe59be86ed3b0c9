"""The strategy contract: a CSV byte stream in, an atomic load and its timings out.

Rules every strategy follows (the round-trip tests hold all of them to these):

* **Input.** A readable binary stream of UTF-8 CSV, header first. Header names map to
  the target table's columns in any order; an unknown, duplicated or missing column is a
  ``LabError`` raised before any row is loaded. A UTF-8 BOM before the header is ignored.
* **NULL vs. empty string** (PostgreSQL's CSV rule, followed by all): an *unquoted* empty
  field is NULL; a *quoted* empty field ``""`` is the empty string.
* **Atomic.** All rows land or none: any failure rolls back and leaves the table as it was.
* **Errors.** Bad input raises ``LabError`` with ``line``, ``column`` (the column name,
  when known) and a short reason. ``line`` counts the way PostgreSQL's COPY does: the
  header is line 1, each record adds one, and each line break inside a quoted field adds
  one more (so a record spanning physical lines is numbered by its last line) — except,
  as in PostgreSQL, ``\n`` breaks inside the very first data record, read before the
  line ending is known.
* **Identifiers** are composed with ``psycopg.sql``, never by string formatting.
* **Timings** (all milliseconds; see ``Timings``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar, Protocol

import psycopg

#: Builds one SQL statement (fully rendered, no parameters) that the strategy runs inside
#: its load transaction just before COMMIT, given the number of rows loaded. The service
#: uses it to mark its ledger row as succeeded atomically with the rows themselves.
Finalize = Callable[[int], str]


@dataclass(frozen=True)
class Timings:
    """Where the time of one load went, in milliseconds.

    parse_ms:  client-side parse/encode, outside the database (0 for pure streaming).
    in_db_ms:  the server's own clock (``clock_timestamp()`` on the loading connection)
               from just before the first load statement to just after the last one,
               before COMMIT. For a streaming COPY this includes waiting for the client's
               bytes. For parallel strategies: earliest statement start to last finish.
    commit_ms: the COMMIT round trip(s), client clock.
    total_ms:  the whole ``load()`` call, client clock: connection acquisition, header
               check, parse/encode, load and commit.
    """

    parse_ms: float
    in_db_ms: float
    commit_ms: float
    total_ms: float

    def __post_init__(self) -> None:
        for name in ("parse_ms", "in_db_ms", "commit_ms", "total_ms"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")


@dataclass(frozen=True)
class LoadResult:
    strategy: str
    table: str
    rows: int
    bytes: int
    timings: Timings
    #: Optional break-down of ``in_db_ms`` into named steps (e.g. staging copy, then move),
    #: in milliseconds, in the order they ran.
    steps: tuple[tuple[str, float], ...] = ()


class Connector(Protocol):
    """Where strategies get connections: a pool in the service, direct elsewhere."""

    @property
    def conninfo(self) -> str:
        """libpq connection string, for drivers other than psycopg (asyncpg, ADBC)."""
        ...

    def connection(
        self,
    ) -> contextlib.AbstractContextManager[psycopg.Connection[tuple[object, ...]]]:
        """A psycopg connection (not in a transaction) for the duration of the block."""
        ...


class DirectConnector:
    """Opens a fresh psycopg connection per ``connection()`` call."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    @property
    def conninfo(self) -> str:
        return self._conninfo

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        from lab.database import connect

        # Autocommit, like the service's pool: the strategy's own ``conn.transaction()``
        # is then the real BEGIN/COMMIT, not a savepoint inside an implicit transaction.
        with connect(self._conninfo, autocommit=True) as conn:
            yield conn


class Strategy(ABC):
    """One way to load a CSV stream into a table. Subclasses are small and do one thing."""

    #: Registry name, e.g. ``"psycopg-text"``.
    name: ClassVar[str]
    #: One line for ``lab strategies`` and the report.
    description: ClassVar[str]
    #: True when memory stays flat whatever the input size (no spooling of the whole input).
    streaming: ClassVar[bool]
    #: True when each load attaches part tables to its target (``strategies/parts.py``):
    #: the service then has them folded back in once there are too many.
    attaches_parts: ClassVar[bool] = False

    @abstractmethod
    def load(
        self,
        source: BinaryIO,
        table: str,
        db: Connector,
        *,
        finalize: Finalize | None = None,
    ) -> LoadResult:
        """Load every row of ``source`` into ``ingest.<table>`` atomically."""
