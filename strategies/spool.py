"""Bounded buffering for strategies that must hold a payload before loading it."""

from __future__ import annotations

import tempfile
from typing import IO, BinaryIO, cast

from lab.config import Settings


def spool_limit() -> int:
    """Bytes kept in memory before a spool moves to a temporary file (``LAB_SPOOL_BYTES``).

    Beyond it the payload goes to a (page-cached) temporary file, so a worker's memory
    stays bounded whatever the upload size; the default is ``Settings.spool_bytes``.
    """
    return Settings.from_env().spool_bytes


def spooled(limit: int | None = None) -> BinaryIO:
    """A binary temporary file that stays in memory up to ``limit`` bytes."""
    size = spool_limit() if limit is None else limit
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=size, mode="w+b")  # noqa: SIM115
    return cast(BinaryIO, spool)


def rolled_over(spool: BinaryIO) -> bool:
    """True once the spool lives on disk."""
    return bool(getattr(spool, "_rolled", False))
