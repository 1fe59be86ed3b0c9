"""Memory stays flat: streaming strategies over a 200 MB upload, buffering ones spool.

The input is generated lazily (a raw stream repeating a block of fake rows), so the test
itself holds only one block. Python allocations are traced with tracemalloc; the whole
process (drivers, pyarrow, libpq buffers) is watched through its RSS, sampled while the
load runs.
"""

from __future__ import annotations

import io
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import pytest

import strategies
from lab.fakedata import HEADER, csv_bytes
from strategies import spool

MB = 1024 * 1024
STREAMING = [n for n, cls in strategies.REGISTRY.items() if cls.streaming]
BUFFERING = [n for n, cls in strategies.REGISTRY.items() if not cls.streaming]


class GeneratedCSV(io.RawIOBase):
    """A CSV upload of ``size`` bytes (whole rows), made on the fly from one block."""

    def __init__(self, size: int, block_rows: int = 10_000) -> None:
        super().__init__()
        data = csv_bytes(block_rows, seed=4)
        self._header = data[: data.index(b"\n") + 1]
        self._block = memoryview(data[len(self._header) :])
        self._remaining = size - len(self._header)
        self._pos = -1  # -1: the header is still to be read
        self.size = len(self._header)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos < 0:
            n = len(self._header)
            buffer[:n] = self._header  # headers are far smaller than any read
            self._pos = 0
            return n
        if self._remaining <= 0:
            return 0
        if self._pos == len(self._block):
            self._pos = 0
        n = min(len(buffer), len(self._block) - self._pos)
        if self._pos == 0 and self._remaining < len(self._block):
            return 0  # stop at a whole block, so the input ends with a whole row
        buffer[:n] = self._block[self._pos : self._pos + n]
        self._pos += n
        self._remaining -= n
        self.size += n
        return n


@dataclass
class Peak:
    traced: int = 0
    rss_growth: int = 0


@contextmanager
def watch() -> Iterator[Peak]:
    """Peak traced Python memory and peak RSS growth of this process during the block."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = Peak()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.rss_growth = max(peak.rss_growth, process.memory_info().rss - baseline)

    sampler = threading.Thread(target=sample, daemon=True)
    tracemalloc.start()
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_generated_input_is_valid_csv():
    stream = io.BufferedReader(GeneratedCSV(3 * MB), 64 * 1024)
    data = stream.read()
    assert data.startswith(",".join(HEADER).encode())
    assert data.endswith(b"\n") and len(data) <= 3 * MB


@pytest.mark.slow
@pytest.mark.parametrize("name", STREAMING)
def test_streaming_memory_is_flat_for_200_mb(name, db, conn):
    conn.execute("TRUNCATE ingest.records")
    source = GeneratedCSV(200 * MB)
    try:
        with watch() as peak:
            result = strategies.get(name).load(io.BufferedReader(source), "records", db)
        print(f"{name}: {source.size / MB:.0f} MB, {result.rows} rows, {peak}")
        assert result.bytes == source.size > 190 * MB
        assert result.rows > 1_000_000
        # A few read chunks and driver buffers, whatever the input size.
        assert peak.traced < 16 * MB, peak
        assert peak.rss_growth < 64 * MB, peak
    finally:
        conn.execute("TRUNCATE ingest.records")


@pytest.mark.slow
@pytest.mark.parametrize("name", BUFFERING)
def test_buffering_strategies_spool_to_disk(name, db, conn, monkeypatch):
    """A 10 MB upload with a 512 KiB spool limit: the payload goes to disk, not to RAM."""
    monkeypatch.setenv("LAB_SPOOL_BYTES", str(MB // 2))
    made: list[object] = []
    real = spool.spooled

    def recording(limit: int | None = None):  # type: ignore[no-untyped-def]
        made.append(f := real(limit))
        return f

    monkeypatch.setattr(spool, "spooled", recording)
    conn.execute("TRUNCATE ingest.records")
    source = GeneratedCSV(10 * MB)
    try:
        with watch() as peak:
            result = strategies.get(name).load(io.BufferedReader(source), "records", db)
        print(f"{name}: {source.size / MB:.0f} MB, {result.rows} rows, {peak}")
        assert result.bytes == source.size > 8 * MB
        assert made and all(spool.rolled_over(f) for f in made)  # type: ignore[arg-type]
        assert peak.rss_growth < 96 * MB, peak
        assert peak.traced < 5 * MB, peak
    finally:
        conn.execute("TRUNCATE ingest.records")
