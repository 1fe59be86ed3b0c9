"""Target tables come from the catalog, never from user text: only tables of the
``ingest`` schema can be loaded, and header names must match their columns."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from lab.errors import LabError

INGEST_SCHEMA = "ingest"
#: PostgreSQL's NAMEDATALEN - 1: no table name is longer.
MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str  # as format_type() renders it, e.g. "numeric(12,2)"
    type_oid: int


@dataclass(frozen=True)
class Target:
    schema: str
    table: str
    columns: tuple[Column, ...]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def column_list(self, names: list[str] | None = None) -> sql.Composed:
        chosen = names if names is not None else [c.name for c in self.columns]
        return sql.SQL(", ").join(sql.Identifier(n) for n in chosen)


def ingest_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Names of the loadable tables (the allow-list)."""
    rows = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1""",
        (INGEST_SCHEMA,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def resolve(conn: psycopg.Connection[tuple[object, ...]], table: str) -> Target:
    """Look ``table`` up in the ingest schema; unknown names are a user error."""
    if "\x00" in table or len(table.encode()) > MAX_IDENTIFIER_BYTES:
        # Not a name PostgreSQL could hold; a NUL cannot even be sent as a parameter.
        raise _unknown(conn, table)
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
             AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (INGEST_SCHEMA, table),
    ).fetchall()
    if not rows:
        raise _unknown(conn, table)
    columns = tuple(Column(str(n), str(t), int(o)) for n, t, o in rows)  # type: ignore[call-overload]
    return Target(INGEST_SCHEMA, table, columns)


def _unknown(conn: psycopg.Connection[tuple[object, ...]], table: str) -> LabError:
    known = ", ".join(ingest_tables(conn)) or "none"
    return LabError(
        f"unknown table {table[:80]!r}; loadable tables: {known}",
        code="unknown_table",
        status=404,
    )


def match_header(header: list[str], target: Target) -> list[str]:
    """Check the header against the table; returns the column names in header order."""
    known = {c.name for c in target.columns}
    seen: set[str] = set()
    for name in header:
        if name not in known:
            raise LabError(
                f"unknown column {name[:80]!r} in header; {target.table} has: "
                + ", ".join(c.name for c in target.columns),
                code="bad_header",
                line=1,
                column=name[:80],
            )
        if name in seen:
            raise LabError(
                f"column {name!r} appears twice in the header",
                code="bad_header",
                line=1,
                column=name,
            )
        seen.add(name)
    missing = [c.name for c in target.columns if c.name not in seen]
    if missing:
        raise LabError(
            "header is missing column(s): " + ", ".join(missing),
            code="bad_header",
            line=1,
            column=missing[0],
        )
    return header
