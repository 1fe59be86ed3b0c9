"""Runs the selected cells and turns every load into a ``Sample``.

Per repetition the target table is truncated first (outside the timed part). A cell whose
strategy or peer is unknown or fails is recorded as a failed sample and the run goes on;
the report shows the failure. One CSV file per row count is generated for the run and
shared by strategies and peers. Around each repetition the CPU of every process involved
is recorded (``experiments/cpu.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from experiments import peers
from experiments.cpu import CpuWatch, postmaster_pid
from experiments.matrix import Cell, batches, planned_loads
from experiments.measure import Sample
from experiments.upload import Body, multipart_body, upload
from experiments.workers import RssWatch
from lab.fakedata import write_csv

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

Progress = Callable[[int], None]


@dataclass(frozen=True)
class HttpTarget:
    """Where the HTTP path uploads: nginx (TLS) when present, else gunicorn."""

    base_url: str
    verify: bool | str
    via: str
    #: gunicorn's master process, whose workers' RSS the HTTP samples record (if known)
    server_pid: int | None = None
    #: nginx's master process (its workers' CPU is the proxy side of a sample), if in front
    proxy_pid: int | None = None


def generate_files(rows: Sequence[int], folder: Path, seed: int) -> dict[int, Path]:
    """One CSV per row count (same seed): every cell of a size loads the same bytes."""
    files = {}
    for n in sorted(set(rows)):
        path = folder / f"records_{n}.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            write_csv(out, n, seed=seed)
        files[n] = path
    return files


@contextlib.contextmanager
def http_stack(url: str) -> Iterator[HttpTarget | None]:
    """The upload service for the HTTP path, or None when ``service.stack`` is absent."""
    try:
        from service.stack import running_stack  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        yield None
        return
    with running_stack(url) as info:  # nginx in front when installed (the stack finds it)
        if info.https_url:
            verify = str(info.ca_file) if info.ca_file else False
            yield HttpTarget(
                str(info.https_url),
                verify,
                "nginx (TLS) -> gunicorn",
                info.gunicorn_pid,
                info.nginx_pid,
            )
        else:
            yield HttpTarget(str(info.http_url), True, "gunicorn (TCP)", info.gunicorn_pid)


def _error(exc: BaseException) -> str:
    """Type and first line of the message: enough for the report's failure table."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


class Runner:
    """Measures cells against one database; ``http`` is None when the path is unavailable."""

    def __init__(
        self,
        url: str,
        run_id: str,
        files: dict[int, Path],
        *,
        http: HttpTarget | None = None,
        http_unavailable: str = "the upload service (service.stack) is not available",
    ) -> None:
        self.url = url
        self.run_id = run_id
        self.files = files
        self.http = http
        self.http_unavailable = http_unavailable
        self._bodies: dict[int, Body] = {}
        #: Set when Ctrl-C stopped the run early; the samples so far are still returned.
        self.interrupted = False

    @functools.cached_property
    def _postmaster(self) -> int | None:
        """The database server's postmaster when it runs on this machine, else None."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            return postmaster_pid(conn.info.backend_pid)

    def _cpu_roots(self, path: str) -> dict[str, int | None]:
        """The process trees whose CPU a sample of ``path`` records (experiments/cpu.py):
        this process (the client, and psql for that peer), the database server when it runs
        on this machine, and for HTTP nginx and gunicorn."""
        roots: dict[str, int | None] = {"client": os.getpid(), "database": self._postmaster}
        if path == "http" and self.http is not None:
            roots |= {"proxy": self.http.proxy_pid, "service": self.http.server_pid}
        return roots

    # -- one load per path ------------------------------------------------------------------

    def _truncate(self, table: str) -> None:
        """Empty the target, and drop the part tables earlier runs attached to it: each
        run starts from the same table, not one with hundreds of (empty) children."""
        from strategies import catalog, parts

        with psycopg.connect(self.url, autocommit=True) as conn:
            parts.empty_target(conn, catalog.resolve(conn, table))

    def _inproc(self, cell: Cell, worker: int) -> dict[str, Any]:
        import strategies
        from strategies.base import DirectConnector

        strategy = strategies.get(cell.name)
        started = time.perf_counter()
        with self.files[cell.rows].open("rb") as source:
            result = strategy.load(source, cell.table, DirectConnector(self.url))
        wall = (time.perf_counter() - started) * 1000
        t = result.timings
        return {
            "rows_loaded": result.rows,
            "bytes": result.bytes,
            "parse_ms": t.parse_ms,
            "in_db_ms": t.in_db_ms,
            "commit_ms": t.commit_ms,
            "total_ms": t.total_ms,
            "wall_ms": wall,
        }

    def _http(self, cell: Cell, worker: int) -> dict[str, Any]:
        import requests

        if self.http is None:
            raise RuntimeError(self.http_unavailable)
        body = self._bodies.get(cell.rows)
        if body is None:
            body = self._bodies[cell.rows] = multipart_body(self.files[cell.rows])
        watch = RssWatch(self.http.server_pid)
        with requests.Session() as session:
            result = upload(
                session, self.http.base_url, cell.table, cell.name, body, verify=self.http.verify
            )
        rss_growth = watch.growth_mb()
        return {
            "rows_loaded": result.rows,
            "bytes": result.bytes,
            "parse_ms": result.parse_ms,
            "in_db_ms": result.in_db_ms,
            "commit_ms": result.commit_ms,
            "total_ms": result.total_ms,
            "wall_ms": result.wall_ms,
            "http_ms": result.http_ms,
            "rss_growth_mb": rss_growth,
        }

    def _peer(self, cell: Cell, worker: int) -> dict[str, Any]:
        result = peers.get(cell.name).run(self.files[cell.rows], cell.table, self.url)
        return {
            "rows_loaded": result.rows,
            "bytes": self.files[cell.rows].stat().st_size,
            "parse_ms": result.parse_ms,
            "in_db_ms": result.in_db_ms,
            "commit_ms": result.commit_ms,
            "total_ms": result.wall_ms,
            "wall_ms": result.wall_ms,
        }

    # -- cells ------------------------------------------------------------------------------

    def _sample(self, cell: Cell, rep: int, worker: int, warmup: bool, **fields: Any) -> Sample:
        return Sample(
            run_id=self.run_id,
            kind=cell.kind,
            path=cell.path,
            name=cell.name,
            rows=cell.rows,
            variant=cell.variant,
            concurrency=cell.concurrency,
            rep=rep,
            worker=worker,
            warmup=warmup,
            **fields,
        )

    def run_cell(self, cell: Cell, advance: Progress | None = None) -> list[Sample]:
        """Warm-ups then measured repetitions; the first failure ends the cell."""
        return [s for rep in self._repetitions(cell, advance) for s in rep]

    def run_batch(self, cells: Sequence[Cell], advance: Progress | None = None) -> list[Sample]:
        """The cells of one interleave group (``matrix.batches``), one repetition of each per
        round, warm-ups first; each round starts one cell further on, so no cell always
        follows the same neighbour. A cell that failed drops out. Samples in cell order."""
        reps = [self._repetitions(cell, advance) for cell in cells]
        taken: list[list[Sample]] = [[] for _ in cells]
        live = list(range(len(cells)))
        turn = 0
        while live:
            start = turn % len(live)
            for index in live[start:] + live[:start]:
                rep = next(reps[index], None)
                if rep is None:
                    live.remove(index)
                else:
                    taken[index].extend(rep)
            turn += 1
        return [s for samples in taken for s in samples]

    def _repetitions(self, cell: Cell, advance: Progress | None) -> Iterator[list[Sample]]:
        """One cell's repetitions, one at a time: each yields its samples (one per worker);
        the first failure is yielded as one failed sample and ends the cell."""
        load = {"inproc": self._inproc, "http": self._http, "peer": self._peer}[cell.path]
        total = cell.warmup + cell.reps
        for index in range(total):
            warmup = index < cell.warmup
            rep = index if warmup else index - cell.warmup
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            try:
                self._truncate(cell.table)
                # Concurrent loads share every process: their CPU is not one load's.
                watch = CpuWatch(self._cpu_roots(cell.path)) if cell.concurrency == 1 else None
                with ThreadPoolExecutor(max_workers=cell.concurrency) as pool:
                    futures = [pool.submit(load, cell, w) for w in range(cell.concurrency)]
                    outcomes = [f.result() for f in futures]
                used = watch.used_ms() if watch is not None else {}
            except Exception as exc:  # any failure is data for the report, not a crash
                if advance:
                    advance((total - index) * cell.concurrency)
                yield [
                    self._sample(
                        cell, rep, 0, warmup, ok=False, error=_error(exc), started_at=stamp
                    )
                ]
                return
            if advance:
                advance(cell.concurrency)
            yield [
                self._sample(cell, rep, worker, warmup, ok=True, started_at=stamp, **fields, **used)
                for worker, fields in enumerate(outcomes)
            ]

    def run(self, cells: Sequence[Cell], *, progress: bool = True) -> list[Sample]:
        """Every cell in order (an interleave group at its first cell's place), with a rich
        progress bar (and ETA) on a terminal."""
        samples: list[Sample] = []
        with progress_bar(progress) as bar:
            task = bar.add_task("benchmark", total=planned_loads(cells))
            try:
                for batch in batches(cells):
                    label = batch[0].label()
                    if len(batch) > 1:
                        label = f"{batch[0].interleave}: {len(batch)} cells interleaved"
                    bar.update(task, description=label)
                    result = self.run_batch(batch, lambda n: bar.advance(task, n))
                    samples.extend(result)
                    failed = {s.cell_key: s.error for s in result if not s.ok}
                    for cell in batch:
                        if cell.key in failed and progress:
                            bar.console.print(
                                f"[red]failed[/red] {cell.label()}: {failed[cell.key]}"
                            )
            except KeyboardInterrupt:
                # Keep what was measured: the caller saves and reports a partial run.
                self.interrupted = True
        return samples


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[RichProgress]:
    """The run's rich progress bar (on stderr, with ETA); hidden when not ``enabled``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("[progress.description]{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)  # stdout stays for the markdown summary
    with RichProgress(*columns, console=console, disable=not enabled, transient=False) as bar:
        yield bar
