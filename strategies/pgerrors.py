"""Turning PostgreSQL's COPY errors into the lab's user-facing error."""

from __future__ import annotations

import re

import psycopg

from lab.errors import LabError

# COPY's error context reads e.g. 'COPY records, line 3, column amount: "abc"'.
_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column ([^:]+))?")


def copy_error(exc: psycopg.Error, *, line_offset: int = 1) -> LabError:
    """A ``LabError`` locating a rejected COPY input.

    PostgreSQL numbers the lines of the data it received; ``line_offset`` adds what it did
    not see (the header line the strategy consumed itself).
    """
    diag = exc.diag
    reason = (diag.message_primary or str(exc)).strip()
    line: int | None = None
    column: str | None = None
    match = _CONTEXT.search(diag.context or "")
    if match:
        line = int(match[1]) + line_offset
        column = match[2]
    status = (
        422 if isinstance(exc, psycopg.errors.DataError | psycopg.errors.IntegrityError) else 400
    )
    return LabError(reason, code="bad_csv", status=status, line=line, column=column)


def is_input_error(exc: psycopg.Error) -> bool:
    """True for errors caused by the uploaded data, not by the server or the lab."""
    return isinstance(
        exc,
        psycopg.errors.DataError
        | psycopg.errors.IntegrityError
        | psycopg.errors.BadCopyFileFormat
        | psycopg.errors.CharacterNotInRepertoire
        | psycopg.errors.UntranslatableCharacter,
    )
