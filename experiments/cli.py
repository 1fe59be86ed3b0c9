"""``lab bench`` (run the matrix, write the report) and ``lab report`` (re-render, compare)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import matrix as matrix_mod
from experiments import peers, results
from lab.errors import LabError

if TYPE_CHECKING:
    from experiments.floor import FloorResult


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="run the benchmark matrix and write reports/<run-id>/index.html",
        description="Run the benchmark matrix (experiments/matrix.toml) and write the report.",
    )
    bench.add_argument("--full", action="store_true", help="the full matrix (adds 1M rows)")
    bench.add_argument("--matrix", default=None, help="matrix name in the file (default: default)")
    bench.add_argument("--matrix-file", type=Path, default=None, help="another matrix TOML file")
    bench.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME",
        help="only this strategy (repeatable)",
    )
    bench.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME",
        help=f"only this peer (repeatable): {', '.join(peers.names())}",
    )
    bench.add_argument("--no-peers", action="store_true", help="skip the peers")
    bench.add_argument("--rows", action="append", type=int, default=[], help="only this row count")
    bench.add_argument(
        "--variant",
        action="append",
        default=[],
        choices=["logged", "unlogged", "pk"],
        help="only this table variant",
    )
    bench.add_argument(
        "--path",
        action="append",
        default=[],
        choices=["inproc", "http", "peer"],
        help="only this path",
    )
    bench.add_argument(
        "--concurrency", action="append", type=int, default=[], help="only this concurrency"
    )
    bench.add_argument("--reps", type=int, default=None, help="measured repetitions per cell")
    bench.add_argument("--warmup", type=int, default=None, help="warm-up runs per cell")
    bench.add_argument(
        "--budget-ms",
        type=float,
        default=None,
        help="the in-DB budget at the reference size (default from the matrix: 50)",
    )
    bench.add_argument(
        "--gate",
        action="store_true",
        help="exit 1 when the best strategy's median in-DB time misses the budget",
    )
    bench.add_argument("--out", type=Path, default=None, help="reports folder (default reports/)")
    bench.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the server floor ([settings.floor]) after the cells",
    )
    bench.add_argument("--dry-run", action="store_true", help="list the cells, run nothing")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=bench_command)

    report = subparsers.add_parser(
        "report",
        help="re-render a run's HTML, or compare two runs",
        description="lab report [RUN] re-renders RUN (default: latest); "
        "lab report compare RUN_A RUN_B compares B against A and exits 1 on a "
        "significant regression beyond --threshold.",
    )
    report.add_argument("words", nargs="*", metavar="RUN | compare RUN_A RUN_B")
    report.add_argument("--out", type=Path, default=None, help="reports folder (default reports/)")
    report.add_argument("--budget-ms", type=float, default=None, help="override the run's budget")
    report.add_argument(
        "--threshold",
        type=float,
        default=1.10,
        help="compare: a slowdown ratio counted as regression (default 1.10)",
    )
    report.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="compare: significance level of the Mann-Whitney test (default 0.05)",
    )
    report.add_argument(
        "--metric",
        default="in_db_ms",
        choices=["in_db_ms", "wall_ms", "total_ms", "http_ms", "commit_ms"],
        help="compare: the metric compared (default in_db_ms)",
    )
    report.set_defaults(handler=report_command)


# -- lab bench ----------------------------------------------------------------------------


def _selection(args: argparse.Namespace) -> matrix_mod.Selection:
    return matrix_mod.Selection(
        strategies=tuple(args.strategy),
        peers=tuple(args.peer),
        rows=tuple(args.rows),
        variants=tuple(args.variant),
        paths=tuple(args.path),
        concurrency=tuple(args.concurrency),
        no_peers=args.no_peers,
        reps=args.reps,
        warmup=args.warmup,
    )


def _psql_version() -> str | None:
    try:
        out = subprocess.run(
            [peers.psql_binary(), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (LabError, OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _enter_stack(stack: contextlib.ExitStack, url: str, wanted: bool) -> tuple[Any, str]:
    """Start the upload service for the HTTP path; (None, why) when there is none."""
    from experiments.runner import http_stack

    if not wanted:
        return None, "no HTTP cell selected"
    try:
        target = stack.enter_context(http_stack(url))
    except Exception as exc:  # a service that cannot start fails the HTTP cells, not the run
        return None, f"the upload service did not start: {type(exc).__name__}: {exc}"[:400]
    return target, "the upload service (service.stack) is not available"


def bench_command(args: argparse.Namespace) -> int:
    import strategies
    from lab.cluster import EmbeddedCluster
    from lab.config import Settings
    from lab.database import resolve_url
    from lab.migrate import migrate

    name = args.matrix or ("full" if args.full else "default")
    matrix = matrix_mod.load(name, args.matrix_file)
    cells = matrix_mod.select(
        matrix_mod.expand(matrix, strategies.names(), peers.names()), _selection(args)
    )
    budget = args.budget_ms if args.budget_ms is not None else matrix.settings.budget_ms
    if args.reps is not None and args.reps < 1:
        raise LabError("--reps must be >= 1", code="bad_selection")
    if args.dry_run:
        for batch in matrix_mod.batches(cells):  # in run order
            for cell in batch:
                group = f"  interleaved ({cell.interleave})" if cell.interleave else ""
                print(f"{cell.label():<50} reps {cell.reps} warmup {cell.warmup}{group}")
        print(f"{len(cells)} cells, {matrix_mod.planned_loads(cells)} loads")
        floor = _floor_settings(args, matrix)
        if floor is not None:
            print(
                f"server floor: {_floor_rows(matrix):,} rows, connections "
                f"{list(floor.connections)}, kinds {list(floor.kinds)}, reps {floor.reps} "
                f"warmup {floor.warmup}, profile {'on' if floor.profile else 'off'}: "
                f"{floor.loads()} loads"
            )
        return 0

    settings = Settings.from_env()
    # An embedded cluster this command starts is stopped again at the end.
    cluster = None if settings.database_url else EmbeddedCluster(settings.home)
    started_here = cluster is not None and not cluster.status().running
    try:
        url = resolve_url(settings)
        migrate(url, settings.migrations_dir)
        return _bench(args, matrix, name, cells, budget, url)
    finally:
        if started_here and cluster is not None:
            cluster.down()


def _floor_settings(
    args: argparse.Namespace, matrix: matrix_mod.Matrix
) -> matrix_mod.FloorSettings | None:
    """The floor to run after the cells, or None (not declared, disabled, ``--no-floor``)."""
    floor = matrix.settings.floor
    return floor if floor.enabled and not args.no_floor else None


def _floor_rows(matrix: matrix_mod.Matrix) -> int:
    return matrix.settings.floor.rows or matrix.settings.reference_rows


def _run_floor(
    url: str, csv: Path, floor: matrix_mod.FloorSettings, rows: int, progress: bool
) -> tuple[FloorResult | None, bool]:
    """The server floor with its own progress bar; (result or None, interrupted)."""
    from experiments import floor as floor_mod
    from experiments.runner import progress_bar

    with progress_bar(progress) as bar:
        task = bar.add_task(f"server floor {rows:,} rows", total=floor.loads())
        try:
            result = floor_mod.measure(url, csv, floor, lambda n: bar.advance(task, n))
        except KeyboardInterrupt:
            return None, True
    if result.error and progress:
        bar.console.print(f"[red]failed[/red] server floor: {result.error}")
    return result, False


def _floor_note(
    floor: FloorResult | None,
    settings: matrix_mod.FloorSettings | None,
    args: argparse.Namespace,
    interrupted: bool,
) -> str:
    """Why a run has no floor (empty when it has one), for the report."""
    if floor is not None:
        return ""
    if args.no_floor:
        return "skipped: lab bench --no-floor"
    if settings is None:
        return "off: the matrix file declares no [settings.floor] (or enabled = false)"
    return "interrupted before the floor (Ctrl-C)" if interrupted else "not measured"


def _bench(
    args: argparse.Namespace,
    matrix: matrix_mod.Matrix,
    name: str,
    cells: list[matrix_mod.Cell],
    budget: float,
    url: str,
) -> int:
    """Run the cells, save, render, print the summary; the gate decides the exit status."""
    import strategies
    from experiments import report
    from experiments.runner import Runner, generate_files

    reports = args.out or results.DEFAULT_REPORTS
    started = datetime.now(UTC)
    run_id = results.new_run_id(started)
    folder = reports / run_id
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = reports / f"{run_id}.{suffix}"
    run_id = folder.name
    clock = time.monotonic()
    wants_http = any(c.path == "http" for c in cells)

    floor_settings = _floor_settings(args, matrix)
    floor_rows = _floor_rows(matrix)
    progress = not args.no_progress and sys.stderr.isatty()
    floor = None

    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        sizes = [c.rows for c in cells] + ([floor_rows] if floor_settings else [])
        files = generate_files(sizes, Path(tmp), matrix.settings.seed)
        with contextlib.ExitStack() as stack:
            target, why = _enter_stack(stack, url, wants_http)
            runner = Runner(url, run_id, files, http=target, http_unavailable=why)
            samples = runner.run(cells, progress=progress)
            http_via = target.via if target is not None else why
        # After the cells and without the upload service: the same database, a quiet server.
        if floor_settings is not None and not runner.interrupted:
            floor, runner.interrupted = _run_floor(
                url, files[floor_rows], floor_settings, floor_rows, progress
            )

    metadata = {
        "matrix": name,
        "matrix_description": matrix.description,
        "argv": " ".join(["lab", *sys.argv[1:]]) if sys.argv else "lab bench",
        "seed": matrix.settings.seed,
        "budget_ms": budget,
        "reference_rows": matrix.settings.reference_rows,
        "targets": matrix.settings.targets,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - clock, 1),
        "cells": len(cells),
        "interrupted": runner.interrupted,
        "http_via": http_via,
        "strategies": {n: strategies.REGISTRY[n].description for n in strategies.names()},
        "peers": {p.name: p.description for p in peers.PEERS.values()},
        "psql": _psql_version(),
        "floor_note": _floor_note(floor, floor_settings, args, runner.interrupted),
        "bootstrap_resamples": 2000,
        **results.machine_metadata(),
        "server": results.server_metadata(url),
    }
    run = results.save(folder, run_id, metadata, samples, floor)
    html = report.render(run, budget)
    results.point_latest(reports, folder)
    print(report.markdown_summary(run, budget))
    print(f"\nreport: {html}")
    if runner.interrupted:
        print("lab: interrupted; the report covers the cells measured so far", file=sys.stderr)
        return 130
    if args.gate:
        gate = report.analyse(run, budget).checks[0]
        if gate.passed is not True:
            print(
                f"gate: MISS — {gate.title}: {gate.measured} (target {gate.target})",
                file=sys.stderr,
            )
            return 1
        print(f"gate: PASS — {gate.measured} (target {gate.target})")
    return 0


# -- lab report ---------------------------------------------------------------------------


def report_command(args: argparse.Namespace) -> int:
    from experiments import report

    reports = args.out or results.DEFAULT_REPORTS
    words = list(args.words)
    if words and words[0] == "compare":
        if len(words) != 3:
            raise LabError("usage: lab report compare RUN_A RUN_B", code="bad_usage")
        return compare_runs(reports, words[1], words[2], args)
    if len(words) > 1:
        raise LabError("usage: lab report [RUN] | lab report compare RUN_A RUN_B", code="bad_usage")
    run = results.load(results.resolve(words[0] if words else None, reports))
    html = report.render(run, args.budget_ms)
    print(report.markdown_summary(run, args.budget_ms))
    print(f"\nreport: {html}")
    return 0


def compare_runs(reports: Path, a: str, b: str, args: argparse.Namespace) -> int:
    from experiments import stats

    run_a = results.load(results.resolve(a, reports))
    run_b = results.load(results.resolve(b, reports))
    table = stats.compare(
        run_a.frame(), run_b.frame(), metric=args.metric, threshold=args.threshold, alpha=args.alpha
    )
    print(
        f"B = {run_b.run_id} against A = {run_a.run_id}; metric {args.metric}; "
        f"regression = B/A > {args.threshold:g} and Mann-Whitney p < {args.alpha:g}"
    )
    print("")
    print("| name | path | rows | variant | conc | n A | n B | median A | median B | B/A | p | |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for _, r in table.iterrows():
        flag = "REGRESSION" if r["regression"] else ("significant" if r["significant"] else "")
        print(
            f"| {r['name']} | {r['path']} | {int(r['rows']):,} | {r['variant']} | "
            f"{int(r['concurrency'])} | {int(r['n_a'])} | {int(r['n_b'])} | "
            f"{r['median_a']:.1f} | {r['median_b']:.1f} | {r['ratio']:.2f} | "
            f"{r['p_value']:.3g} | {flag} |"
        )
    if table.empty:
        print("(no cell with data for this metric in both runs)")
    regressions = int(table["regression"].sum()) if not table.empty else 0
    print("")
    if regressions:
        print(
            f"{regressions} significant regression(s) beyond {args.threshold:g}x", file=sys.stderr
        )
        return 1
    print("no significant regression")
    return 0
