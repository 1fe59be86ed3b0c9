"""Turning PostgreSQL's COPY errors (from any driver) into the lab's user-facing error."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg

from lab.errors import LabError

# COPY's error context reads e.g. 'COPY records, line 3, column amount: "abc"'.
_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column ([^:]+))?")
_MISSING = re.compile(r'missing data for column "([^"]+)"')

#: SQLSTATEs of malformed CSV (400); other input errors are values of the wrong type (422).
_MALFORMED = {"22P04", "22021"}  # bad_copy_file_format, character_not_in_repertoire


def is_input_sqlstate(sqlstate: str | None) -> bool:
    """Data exceptions (class 22) and integrity violations (class 23) come from the input."""
    return bool(sqlstate) and str(sqlstate)[:2] in ("22", "23")


def input_error(
    message: str,
    context: str | None,
    sqlstate: str | None,
    *,
    line_of: Callable[[int], int] = lambda n: n + 1,
) -> LabError:
    """A ``LabError`` locating rejected COPY input.

    ``line_of`` maps the line number the server reports (it numbers what it received) to
    the line of the upload: +1 for a text COPY after the header the strategy consumed;
    row-based for a binary COPY.
    """
    reason = message.strip()
    line: int | None = None
    column: str | None = None
    match = _CONTEXT.search(context or "")
    if match:
        line = line_of(int(match[1]))
        column = match[2]
    missing = _MISSING.search(reason)
    if column is None and missing:
        column = missing[1]
    status = 400 if sqlstate in _MALFORMED else 422
    return LabError(reason, code="bad_csv", status=status, line=line, column=column)


def copy_error(
    exc: psycopg.Error, *, line_offset: int = 1, line_of: Callable[[int], int] | None = None
) -> LabError:
    """``input_error`` for a psycopg exception."""
    diag = exc.diag
    return input_error(
        diag.message_primary or str(exc),
        diag.context,
        diag.sqlstate,
        line_of=line_of or (lambda n: n + line_offset),
    )


def is_input_error(exc: psycopg.Error) -> bool:
    """True for errors caused by the uploaded data, not by the server or the lab."""
    return is_input_sqlstate(exc.diag.sqlstate)
