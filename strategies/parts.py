"""Part tables: slices that N connections create and fill, each in its own transaction,
published to the target in one final transaction (``parallel-freeze``, ``parallel-text``).

A part table is created in the transaction that fills it, so under ``wal_level=minimal``
its rows are not WAL-logged (the file is synced at commit instead) and ``COPY … FREEZE``
may write them already frozen. Publishing is ``ALTER TABLE … INHERIT`` per part (a
catalog change, no row moves) unless the target has a unique index, which cannot span
children: then the rows are moved with one ``INSERT … SELECT`` and the parts dropped.
Until the publish commits no part is visible through the target; after any failure
``drop`` removes them all.

Every upload adds N children to its target, and many children cost every reader (each
query plans and scans them all) and every ``TRUNCATE``. ``compact`` folds them back into
the target; the service runs it in the background once a target has more than
``LAB_MAX_PARTS`` (``service/maintenance.py``), operators with ``lab compact``.
Parts a killed worker committed but never published are dropped by ``drop_orphans``.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

import psycopg
from psycopg import sql

from strategies import common
from strategies.base import Connector, Finalize, LoadResult, Timings
from strategies.catalog import Target
from strategies.pgerrors import copy_error, is_input_error
from strategies.slices import connections, move_rows, usable
from strategies.unlogged_staging import STAGING_SCHEMA

#: Where part tables live (migration 004): outside ``ingest``, so never upload targets.
SCHEMA = "ingest_parts"

_UNIQUE_SQL = """SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = %s::regclass
                                AND indisunique)"""


def names(table: str, n: int) -> list[sql.Identifier]:
    """N fresh part table names for one load into ``table``."""
    prefix = f"{table[:30]}_{uuid.uuid4().hex[:16]}"
    return [sql.Identifier(SCHEMA, f"{prefix}_{k}") for k in range(n)]


def can_attach(conn: common.Conn, target: Target) -> bool:
    """True when parts may become children of ``target`` (it has no unique index)."""
    row = conn.execute(_UNIQUE_SQL, (target.ident.as_string(conn),)).fetchone()
    return not (row and row[0])


def plan(db: Connector, source: BinaryIO, table: str) -> tuple[common.Plan, bool]:
    """The load's plan (``common.plan``: the catalog and the header, read off ``source``)
    and whether its parts may be attached to the target (``can_attach``)."""
    with db.connection() as conn:
        checked = common.plan(conn, source, table)
        attach = can_attach(conn, checked.target)
        if not conn.autocommit:
            conn.rollback()
    return checked, attach


def create(conn: common.Conn, part: sql.Identifier, target: Target) -> None:
    """Create one part shaped like the target (run inside the transaction that fills it)."""
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            part, target.ident
        )
    )


@dataclass(frozen=True)
class Filled:
    """One part's transaction: its server-clock start, the server time just after its
    commit, and the rows its COPY loaded."""

    start: float
    end: float
    rows: int


#: Sends one part's input through ``COPY … FROM STDIN`` on the cursor (``fill``).
Send = Callable[["psycopg.Cursor[tuple[object, ...]]", sql.Composed], object]


def fill(
    conn: common.Conn,
    plan: common.Plan,
    part: sql.Identifier,
    form: Literal["csv", "binary"],
    send: Send,
) -> Filled:
    """Create one part and ``COPY … (FORMAT form, FREEZE)`` into it, in one transaction:
    ``send(cursor, statement)`` runs the COPY."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}, FREEZE)").format(
        part, plan.target.column_list(plan.names), sql.SQL(form)
    )
    with conn.transaction():
        common.pin_session(conn)
        start = common.server_clock_ms(conn)
        create(conn, part, plan.target)
        with conn.cursor() as cur:
            send(cur, statement)
            rows = cur.rowcount
    return Filled(start, common.server_clock_ms(conn), rows)


def publish(
    conn: common.Conn,
    target: Target,
    columns: list[str],
    parts: list[sql.Identifier],
    *,
    attach: bool,
    empty: frozenset[int] = frozenset(),
) -> int | None:
    """Make the parts' rows the target's, inside the caller's transaction.

    Parts listed in ``empty`` (no rows) are dropped instead of attached. Returns the
    number of rows moved, or None when the parts were attached (nothing was counted).
    """
    full = [p for k, p in enumerate(parts) if k not in empty]
    for k in sorted(empty):
        conn.execute(sql.SQL("DROP TABLE {}").format(parts[k]))
    if attach:
        for part in full:
            conn.execute(sql.SQL("ALTER TABLE {} INHERIT {}").format(part, target.ident))
        return None
    moved = conn.execute(move_rows(target, columns, full)).rowcount if full else 0
    for part in full:
        conn.execute(sql.SQL("DROP TABLE {}").format(part))
    return moved


@dataclass(frozen=True)
class Published:
    """The final transaction of a load: rows published, its server-clock start and end
    (before COMMIT), and the COMMIT's client-side duration."""

    rows: int
    start: float
    end: float
    commit_ms: float


def publish_load(
    conn: common.Conn,
    plan: common.Plan,
    tables: list[sql.Identifier],
    filled: Sequence[Filled],
    *,
    attach: bool,
    finalize: Finalize | None,
) -> Published:
    """``publish`` in its own transaction with ``finalize``; the parts that loaded no rows
    are dropped, not published. An attach publishes the rows the parts loaded; a move
    counts its own."""
    empty = frozenset(k for k, part in enumerate(filled) if part.rows == 0)
    with conn.transaction():
        common.pin_session(conn)
        start = common.server_clock_ms(conn)
        moved = publish(conn, plan.target, plan.names, tables, attach=attach, empty=empty)
        total = sum(part.rows for part in filled) if moved is None else moved
        end = common.server_clock_ms(conn)
        if finalize is not None:
            conn.execute(finalize(total).encode())
        commit_start = time.perf_counter()
    return Published(total, start, end, (time.perf_counter() - commit_start) * 1000)


def load_result(
    strategy: str,
    table: str,
    nbytes: int,
    *,
    started: float,
    parse_ms: float,
    filled: Sequence[Filled],
    done: Published,
) -> LoadResult:
    """The result of a load published by ``publish_load``: in-DB from the earliest part's
    start to the end of the publish (server clock), ``steps`` ``slices`` (to the last
    part's commit) and ``publish``; ``started`` is the load's ``perf_counter`` start."""
    first = min(part.start for part in filled)
    return LoadResult(
        strategy=strategy,
        table=table,
        rows=done.rows,
        bytes=nbytes,
        timings=Timings(
            parse_ms=parse_ms,
            in_db_ms=done.end - first,
            commit_ms=done.commit_ms,
            total_ms=(time.perf_counter() - started) * 1000,
        ),
        steps=(
            ("slices", max(part.end for part in filled) - first),
            ("publish", done.end - done.start),
        ),
    )


@contextlib.contextmanager
def slice_connections(db: Connector, tables: list[sql.Identifier]) -> Iterator[list[common.Conn]]:
    """One connection per table (``slices.connections``) for the block, in which the
    load's slices and publish run: if it fails, every table is dropped
    (``dropped_on_failure``). The first connection holds the load's lock (``load_lock``)
    from before any table exists until they are published or dropped."""
    with (
        connections(db, len(tables)) as conns,
        load_lock(conns[0], tables),
        dropped_on_failure(db, conns, tables),
    ):
        yield conns


# -- orphans ------------------------------------------------------------------------------

#: First key of the session advisory lock a parallel load holds while its tables exist
#: unpublished; the second is a hash of the load's id, the hex run in its tables' names
#: (``names``: ``ingest_parts.<target>_<16 hex>_<k>``; parallel-binary:
#: ``lab.stage_<32 hex>_<k>``). The benchmark floor's ``floor_<12 hex>_<k>`` never match.
_LOAD_LOCK_CLASS = 0x1AB1
_LOAD_ID = r"_([0-9a-f]{16}|[0-9a-f]{32})_[0-9]+$"
_UNPUBLISHED_SQL = """
    SELECT n.nspname, c.relname, substring(c.relname FROM %(id)s)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
       AND ((n.nspname = %(parts)s AND c.relname ~ '_[0-9a-f]{16}_[0-9]+$')
         OR (n.nspname = %(stages)s AND c.relname ~ '^stage_[0-9a-f]{32}_[0-9]+$'))
       AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
     ORDER BY 1, 2"""


def load_id(table: sql.Identifier) -> str:
    """The id of the load a part or staging table belongs to (see ``_LOAD_ID``)."""
    found = re.search(_LOAD_ID.replace("$", '"$'), table.as_string())
    if found is None:
        raise ValueError(f"{table.as_string()} is not a parallel load's table")
    return found[1]


@contextlib.contextmanager
def load_lock(conn: common.Conn, tables: list[sql.Identifier]) -> Iterator[None]:
    """Hold the load's session lock on ``conn`` while the block runs.

    A worker killed between its slices' commits and the publish leaves committed tables
    that nothing attaches; its connection closes and the lock goes with it, which is how
    ``drop_orphans`` tells such tables from those of a load still running.
    """
    key = (_LOAD_LOCK_CLASS, load_id(tables[0]))
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
    if not conn.autocommit:
        conn.commit()  # a session lock outlives the transaction; the slices open their own
    try:
        yield
    finally:
        if not (conn.closed or conn.broken):
            with contextlib.suppress(psycopg.Error):
                if not conn.autocommit:
                    conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
                if not conn.autocommit:
                    conn.commit()


def drop_orphans(conn: common.Conn) -> list[str]:
    """Drop the unpublished tables of parallel loads that are no longer running (their
    load's lock is free); returns their names. A running load's tables are left alone."""
    found = conn.execute(
        _UNPUBLISHED_SQL, {"id": _LOAD_ID, "parts": SCHEMA, "stages": STAGING_SCHEMA}
    ).fetchall()
    by_load: dict[str, list[sql.Identifier]] = {}
    for schema, name, load in found:
        by_load.setdefault(str(load), []).append(sql.Identifier(str(schema), str(name)))
    dropped = []
    for load, tables in by_load.items():
        with conn.transaction():
            # Transaction-scoped: granted only while no load holds it, released at commit.
            row = conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (_LOAD_LOCK_CLASS, load)
            ).fetchone()
            if not (row and row[0]):
                continue
            for table in tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                dropped.append(table.as_string())
    return dropped


@contextlib.contextmanager
def dropped_on_failure(
    db: Connector, conns: list[common.Conn], tables: list[sql.Identifier]
) -> Iterator[None]:
    """Run a parallel load's slices and publish: if the block fails, every table in
    ``tables`` is dropped (``drop``), and rejected input becomes the user's error."""
    try:
        yield
    except BaseException as exc:
        drop(db, conns, tables)
        if isinstance(exc, psycopg.Error) and is_input_error(exc):
            raise copy_error(exc) from None
        raise


def empty_target(conn: common.Conn, target: Target) -> None:
    """``TRUNCATE`` the target after dropping its parts without moving their rows: it
    starts over as one table, not one with a pile of empty children."""
    compact(conn, target, keep_rows=False)
    conn.execute(sql.SQL("TRUNCATE {}").format(target.ident))


def drop(db: Connector, conns: list[common.Conn], parts: list[sql.Identifier]) -> None:
    """Remove whatever parts exist (after a failure; none are left otherwise), on one of
    the load's own connections that still works, else on a new one."""
    conn = usable(conns)
    if conn is None:
        with db.connection() as fresh:
            _drop(fresh, parts)
    else:
        _drop(conn, parts)


def _drop(conn: common.Conn, parts: list[sql.Identifier]) -> None:
    with conn.transaction():
        for part in parts:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(part))


_ATTACHED_SQL = """SELECT c.relname FROM pg_inherits i
                     JOIN pg_class c ON c.oid = i.inhrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE i.inhparent = %s::regclass AND n.nspname = %s
                    ORDER BY c.relname"""

# Compactions of one target take turns (transaction-scoped advisory lock on its oid);
# this is the lock's first key, so other advisory locks of the lab never collide.
_COMPACT_LOCK_CLASS = 0x1AB0


@dataclass(frozen=True)
class Compacted:
    """What one compaction did: parts folded (dropped) and rows moved into the target."""

    parts: int
    rows: int


def attached(conn: common.Conn, target: Target) -> list[sql.Identifier]:
    """The parts currently attached to ``target``."""
    rows = conn.execute(_ATTACHED_SQL, (target.ident.as_string(conn), SCHEMA)).fetchall()
    return [sql.Identifier(SCHEMA, str(r[0])) for r in rows]


def compact(conn: common.Conn, target: Target, *, keep_rows: bool = True) -> Compacted:
    """Fold every part attached to ``target`` back into the target itself, in one
    transaction: their rows are inserted into the target itself, the parts dropped.

    Readers see the rows in the parts before and in the target after, never both or
    neither. Each row moves once: the target holds the compacted rows, the parts only
    the uploads since. ``keep_rows=False`` drops the parts without moving their rows
    (for a caller about to empty the target anyway, like the benchmark between runs).
    """
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, %s::regclass::oid::int)",
            (_COMPACT_LOCK_CLASS, target.ident.as_string(conn)),
        )
        found = attached(conn, target)
        moved = 0
        columns = target.column_list()
        for part in found:
            if keep_rows:
                moved += conn.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM ONLY {}").format(
                        target.ident, columns, columns, part
                    )
                ).rowcount
            conn.execute(sql.SQL("DROP TABLE {}").format(part))
    return Compacted(len(found), moved)
