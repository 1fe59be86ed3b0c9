"""arrow-adbc reads the spooled upload on the loading thread only.

pyarrow's streaming CSV reader reads a Python file ahead on a background thread and went
on doing so after it had failed; the exact parser that takes over then read a spool
whose position moved under it, and a 50 MiB field was stored 1 MiB short in some loads.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

import strategies
from lab.fakedata import csv_bytes
from strategies import spool

MB = 1024 * 1024


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread of every read of every spool the load makes."""
    seen: list[str] = []
    real = spool.spooled

    def recording(limit: int | None = None) -> Any:
        f = real(limit)
        read = f.read

        def traced(*args: Any) -> bytes:
            seen.append(threading.current_thread().name)
            return read(*args)

        f.read = traced  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(spool, "spooled", recording)
    return seen


@pytest.mark.parametrize(
    ("body", "name_length"),
    [
        (csv_bytes(20_000, seed=3), None),  # the fast path, several pieces
        # One 8 MiB field: pyarrow refuses it (a value straddling its blocks) and the
        # exact parser takes over.
        (csv_bytes(0, seed=3) + b"1,," + b"x" * (8 * MB) + b",,,,,,,c\n", 8 * MB),
    ],
    ids=["fast", "fallback"],
)
def test_spool_is_read_on_the_loading_thread_only(
    body: bytes, name_length: int | None, reads: list[str], db: Any, conn: Any
) -> None:
    conn.execute("TRUNCATE ingest.records")
    result = strategies.get("arrow-adbc").load(io.BytesIO(body), "records", db)
    assert reads and set(reads) == {threading.current_thread().name}
    if name_length is not None:
        assert result.rows == 1
        row = conn.execute("SELECT length(name), category FROM ingest.records").fetchone()
        assert row == (name_length, "c")
    else:
        assert result.rows == 20_000
    conn.execute("TRUNCATE ingest.records")
