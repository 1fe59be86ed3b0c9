"""Bounded buffering for strategies that must hold a payload before loading it."""

from __future__ import annotations

import tempfile
from typing import IO, BinaryIO, cast

from lab.config import Settings


def spool_limit() -> int:
    """Bytes kept in memory before a spool moves to a temporary file (``LAB_SPOOL_BYTES``).

    The default, 8 MiB, holds a 100k-row binary payload's first tenth: the rest goes to a
    page-cached temporary file, which costs a few ms per 100 MB here but keeps each
    worker's memory flat whatever the upload size.
    """
    return Settings.from_env().spool_bytes


def spooled(limit: int | None = None) -> BinaryIO:
    """A binary temporary file that stays in memory up to ``limit`` bytes."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(
        max_size=spool_limit() if limit is None else limit, mode="w+b"
    )
    return cast(BinaryIO, spool)


def rolled_over(spool: BinaryIO) -> bool:
    """True once the spool lives on disk."""
    return bool(getattr(spool, "_rolled", False))
