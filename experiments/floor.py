"""The server's floor: how fast PostgreSQL itself takes the reference file, with no client
work in the window.

The run's reference CSV is encoded once per connection count N (``fastencode``, the
strategies' encoder) into N in-memory binary COPY payloads. Each load then: N threads,
one connection each, meet at a barrier; each runs ``BEGIN``; server clock; ``CREATE
[UNLOGGED] TABLE ingest_parts.… (LIKE ingest.records)``; ``COPY … (FORMAT binary,
FREEZE)`` of its pre-encoded slice; server clock; ``COMMIT``; server clock. The window
runs from the earliest start to the latest COPY end (``copy_ms``) and to the latest
commit end (``commit_ms``). A table created in its own transaction is not WAL-logged
under ``wal_level=minimal`` (its file is synced at commit) and FREEZE writes the rows
frozen: the least work the server can do for these rows. The tables are dropped after
each load, outside the timing; ``ingest.records`` is never touched.

Repetitions are interleaved (every N and kind once per round) so a noisy moment hits all
of them alike. With ``profile`` on and perf usable, a few extra N=1 durable loads run
under ``perf record -a`` (``experiments.perfprofile``).
"""

from __future__ import annotations

import io
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from experiments import perfprofile
from experiments.matrix import FloorSettings

#: The target whose columns the floor tables copy, and the schema they are created in
#: (migration 004: never an upload target).
SOURCE_TABLE = "records"
PARTS_SCHEMA = "ingest_parts"
#: COPY write size: 1 MiB pieces, the payload is already in memory (fewer, larger writes).
WRITE_BYTES = 1024 * 1024
#: Seconds a thread waits at the barrier for the others (they only open a transaction).
BARRIER_TIMEOUT_S = 60

Advance = Callable[[int], None]


@dataclass(frozen=True)
class FloorSample:
    """One load of the floor: N connections, one table kind; server-clock windows in ms."""

    connections: int
    kind: str
    rep: int
    warmup: bool
    rows: int
    copy_ms: float
    commit_ms: float
    started_at: str
    #: Per connection: (start, COPY end, commit end), ms since the earliest start.
    slices: tuple[tuple[float, float, float], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FloorSample:
        return cls(
            connections=int(data["connections"]),
            kind=str(data["kind"]),
            rep=int(data["rep"]),
            warmup=bool(data["warmup"]),
            rows=int(data["rows"]),
            copy_ms=float(data["copy_ms"]),
            commit_ms=float(data["commit_ms"]),
            started_at=str(data.get("started_at", "")),
            slices=tuple((float(a), float(b), float(c)) for a, b, c in data.get("slices", [])),
        )


@dataclass(frozen=True)
class FloorResult:
    """Everything the floor measured in one run (raw samples kept)."""

    rows: int
    csv_bytes: int
    connections: tuple[int, ...]
    kinds: tuple[str, ...]
    reps: int
    warmup: int
    #: Binary COPY payload size (all slices) and the one-off encode time (outside every
    #: window), for the first declared N.
    payload_bytes: int
    encode_ms: float
    samples: tuple[FloorSample, ...]
    profile: perfprofile.Profile
    #: Set when the encode or a load failed: the floor stopped there, samples so far kept.
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["profile"] = self.profile.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FloorResult:
        return cls(
            rows=int(data["rows"]),
            csv_bytes=int(data["csv_bytes"]),
            connections=tuple(int(n) for n in data["connections"]),
            kinds=tuple(str(k) for k in data["kinds"]),
            reps=int(data["reps"]),
            warmup=int(data["warmup"]),
            payload_bytes=int(data["payload_bytes"]),
            encode_ms=float(data["encode_ms"]),
            samples=tuple(FloorSample.from_dict(s) for s in data["samples"]),
            profile=perfprofile.Profile.from_dict(data["profile"]),
            error=str(data.get("error", "")),
        )


@dataclass(frozen=True)
class FloorRow:
    """Statistics of one (N, kind) over its measured repetitions."""

    connections: int
    kind: str
    n: int
    copy_median: float
    copy_min: float
    commit_median: float
    commit_min: float


def summary(result: FloorResult) -> list[FloorRow]:
    """Median and minimum per (N, kind), in declared order; warm-ups left out."""
    out = []
    for n in result.connections:
        for kind in result.kinds:
            chosen = [
                s for s in result.samples if s.connections == n and s.kind == kind and not s.warmup
            ]
            if not chosen:
                continue
            copies = [s.copy_ms for s in chosen]
            commits = [s.commit_ms for s in chosen]
            out.append(
                FloorRow(
                    n,
                    kind,
                    len(chosen),
                    statistics.median(copies),
                    min(copies),
                    statistics.median(commits),
                    min(commits),
                )
            )
    return out


def verdict(rows: Sequence[FloorRow], budget_ms: float) -> str:
    """One sentence: the floor of the reference table against the budget.

    The reference table is logged, so its floor is the best durable line (COPY median);
    unlogged tables lose their rows on a crash and are named apart, never as the verdict.
    """
    if not rows:
        return "The floor was not measured in this run."
    durable = [r for r in rows if r.kind == "durable"]
    if not durable:
        best = min(rows, key=lambda r: r.copy_median)
        return (
            f"No durable line was measured: the logged reference table has no floor in this "
            f"run (best unlogged: {best.copy_median:.1f} ms COPY median, N={best.connections})."
        )
    best = min(durable, key=lambda r: r.copy_median)
    if best.copy_median > budget_ms:
        relation = f"is above the {budget_ms:g} ms budget ({best.copy_median / budget_ms:.1f}x)"
    else:
        relation = f"is within the {budget_ms:g} ms budget"
    text = (
        f"The floor of the logged reference table, {best.copy_median:.1f} ms COPY median "
        f"(N={best.connections}, durable; {best.commit_median:.1f} ms with its commit), "
        f"{relation}."
    )
    unlogged = [r for r in rows if r.kind == "unlogged"]
    if unlogged:
        fast = min(unlogged, key=lambda r: r.copy_median)
        text += (
            f" Unlogged tables, which lose their rows on a crash, took {fast.copy_median:.1f} ms "
            f"(N={fast.connections}; {fast.commit_median:.1f} ms with the commit)."
        )
    return text


# -- measuring --------------------------------------------------------------------------------


def encode_slices(csv_path: Path, url: str, n: int) -> tuple[list[bytes], int]:
    """The CSV as n binary COPY payloads (the strategies' encoder and slicing), and its rows."""
    from strategies import common, fastencode

    sinks = [io.BytesIO() for _ in range(n)]
    with psycopg.connect(url) as conn, csv_path.open("rb") as source:
        plan = common.plan(conn, source, SOURCE_TABLE)
        encoded = fastencode.encode(source, plan.columns, sinks)
    return [s.getvalue() for s in sinks], encoded.total_rows


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Aborted(RuntimeError):
    """A connection gave up because another one of its load failed."""


class _Load:
    """One floor load: N connections, opened before and closed after the timed part."""

    def __init__(self, url: str, kind: str, payloads: Sequence[bytes]) -> None:
        self.url = url
        self.kind = kind
        self.payloads = payloads
        prefix = f"floor_{uuid.uuid4().hex[:12]}"
        self.tables = [sql.Identifier(PARTS_SCHEMA, f"{prefix}_{k}") for k in range(len(payloads))]
        self.barrier = threading.Barrier(len(payloads), timeout=BARRIER_TIMEOUT_S)
        #: The server processes (backends) that ran the slices, for the profile's filter.
        self.pids: list[int] = []

    def _slice(self, k: int) -> tuple[float, float, float, int]:
        from strategies import common

        create = sql.SQL(
            "CREATE UNLOGGED TABLE {} (LIKE {})"
            if self.kind == "unlogged"
            else "CREATE TABLE {} (LIKE {})"
        ).format(self.tables[k], sql.Identifier("ingest", SOURCE_TABLE))
        copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT binary, FREEZE)").format(self.tables[k])
        payload = memoryview(self.payloads[k])
        with psycopg.connect(self.url, autocommit=True) as conn:
            self.pids.append(conn.info.backend_pid)
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                raise _Aborted("another connection of this load failed first") from None
            try:
                with conn.transaction():
                    common.pin_session(conn)
                    start = common.server_clock_ms(conn)
                    conn.execute(create)
                    with conn.cursor() as cur:
                        with cur.copy(copy_sql) as copy:
                            for at in range(0, len(payload), WRITE_BYTES):
                                copy.write(payload[at : at + WRITE_BYTES])
                        rows = cur.rowcount
                    copied = common.server_clock_ms(conn)
                committed = common.server_clock_ms(conn)
            except BaseException:
                self.barrier.abort()
                raise
        return start, copied, committed, rows

    def run(self) -> tuple[float, float, tuple[tuple[float, float, float], ...], int]:
        """(copy window, commit window, per-slice times, rows); tables dropped afterwards."""
        try:
            with ThreadPoolExecutor(max_workers=len(self.payloads)) as pool:
                futures = [pool.submit(self._slice, k) for k in range(len(self.payloads))]
            errors = [e for f in futures if (e := f.exception()) is not None]
            if errors:  # the cause, not a connection that only saw the barrier break
                raise min(errors, key=lambda e: isinstance(e, _Aborted))
            outcomes = [f.result() for f in futures]
        finally:
            self.drop()
        first = min(o[0] for o in outcomes)
        spans = tuple((s - first, c - first, e - first) for s, c, e, _ in outcomes)
        return (
            max(o[1] for o in outcomes) - first,
            max(o[2] for o in outcomes) - first,
            spans,
            sum(o[3] for o in outcomes),
        )

    def drop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn, conn.transaction():
            for table in self.tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def _error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def measure(
    url: str,
    csv_path: Path,
    settings: FloorSettings,
    advance: Advance | None = None,
) -> FloorResult:
    """Run the floor as ``settings`` declares against ``url``, on the CSV at ``csv_path``."""
    tick = advance or (lambda n: None)
    payloads: dict[int, list[bytes]] = {}
    encode_ms: dict[int, float] = {}
    expected = 0
    samples: list[FloorSample] = []
    error = ""
    try:
        for n in sorted(set(settings.connections) | ({1} if settings.profile else set())):
            started = time.perf_counter()
            payloads[n], expected = encode_slices(csv_path, url, n)
            encode_ms[n] = (time.perf_counter() - started) * 1000
        for index in range(settings.warmup + settings.reps):
            warmup = index < settings.warmup
            rep = index if warmup else index - settings.warmup
            for n in settings.connections:
                for kind in settings.kinds:
                    stamp = _now()
                    copy_ms, commit_ms, spans, rows = _Load(url, kind, payloads[n]).run()
                    if rows != expected:
                        raise RuntimeError(f"COPY reported {rows} rows, the file has {expected}")
                    samples.append(
                        FloorSample(n, kind, rep, warmup, rows, copy_ms, commit_ms, stamp, spans)
                    )
                    tick(1)
    except Exception as exc:  # a failure is data for the report, not a crash of the run
        error = _error(exc)
    if error:
        profile = perfprofile.Profile(False, "the floor stopped after a failure")
    elif settings.profile:
        profile = take_profile(url, payloads[1], settings.profile_loads, tick)
    else:
        profile = perfprofile.Profile(False, "profiling is off ([settings.floor] profile = false)")
    return FloorResult(
        rows=expected,
        csv_bytes=csv_path.stat().st_size,
        connections=tuple(settings.connections),
        kinds=tuple(settings.kinds),
        reps=settings.reps,
        warmup=settings.warmup,
        payload_bytes=sum(len(p) for p in payloads.get(settings.connections[0], [])),
        encode_ms=encode_ms.get(settings.connections[0], 0.0),
        samples=tuple(samples),
        profile=profile,
        error=error,
    )


def take_profile(url: str, payload: list[bytes], loads: int, tick: Advance) -> perfprofile.Profile:
    """``loads`` N=1 durable loads under ``perf record -a``; the reason when perf cannot."""
    reason = perfprofile.probe()
    if reason is not None:
        tick(loads)
        return perfprofile.Profile(False, reason)
    with tempfile.TemporaryDirectory(prefix="lab-floor-perf-") as tmp:
        data = Path(tmp) / "perf.data"
        pids: list[int] = []
        try:
            with perfprofile.recording(data):
                for _ in range(loads):
                    load = _Load(url, "durable", payload)
                    load.run()
                    pids += load.pids
                    tick(1)
            text = perfprofile.report_text(data, pids)
        except Exception as exc:  # no profile is a reason in the report, not a failed run
            return perfprofile.Profile(False, f"profiling failed: {_error(exc)}", loads=loads)
    return perfprofile.from_report(text, loads)
