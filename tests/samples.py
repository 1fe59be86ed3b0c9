"""Benchmark samples for tests that need results without running loads."""

from __future__ import annotations

from typing import Any

from experiments.measure import Sample


def sample(**fields: Any) -> Sample:
    """A successful measured sample of the reference cell (psycopg-text in-process, 100k
    rows, logged table, repetition 0); ``fields`` override any of it."""
    base: dict[str, Any] = {
        "run_id": "r",
        "kind": "strategy",
        "path": "inproc",
        "name": "psycopg-text",
        "rows": 100_000,
        "variant": "logged",
        "concurrency": 1,
        "rep": 0,
        "worker": 0,
        "warmup": False,
        "ok": True,
    }
    return Sample(**(base | fields))


def psql(rep: int, **fields: Any) -> Sample:
    """A psql \\copy peer sample at the reference cell."""
    return sample(kind="peer", path="peer", name="psql-copy", rep=rep, **fields)
