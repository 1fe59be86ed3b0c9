"""``lab load``: a bounded headless Locust run with the audit, or ``--web`` for the UI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments import loadrun, payloads, shapes
from lab.errors import LabError


def register(subparsers: Any) -> None:
    load = subparsers.add_parser(
        "load",
        help="Locust load test against the service on 127.0.0.1, with the no-data-lost audit",
        description="Start the service (embedded PostgreSQL unless DATABASE_URL), empty the "
        "target table, run Locust headless for a bounded time (or its web UI with --web), "
        "then check that every acknowledged row, and no other, is in the table. Exits 1 "
        "when a request failed or the audit does not hold.",
    )
    load.add_argument("--users", type=int, default=4, help="peak concurrent users (default 4)")
    load.add_argument(
        "--spawn-rate", type=float, default=2.0, help="users started per second (default 2)"
    )
    load.add_argument(
        "--run-time",
        default="30s",
        help=f"how long to load, e.g. 30s, 2m (default 30s, at most {loadrun.MAX_RUN_TIME_S}s)",
    )
    load.add_argument("--rows", type=int, default=10_000, help="rows per upload (default 10000)")
    load.add_argument(
        "--strategy-mix",
        default=None,
        help='strategies and weights, e.g. "psycopg-text:3,psycopg-binary:1" '
        "(default: every registered strategy, weight 1)",
    )
    load.add_argument(
        "--reject-share",
        type=float,
        default=0.1,
        help="share of uploads with a bad last row, which must be refused (default 0.1)",
    )
    load.add_argument("--shape", choices=shapes.SHAPES, default="steady", help="load shape")
    load.add_argument("--table", default="records", help="target table in schema ingest")
    load.add_argument(
        "--body", choices=payloads.ENCODINGS, default="multipart", help="request body encoding"
    )
    load.add_argument(
        "--no-nginx",
        action="store_true",
        help="load gunicorn's TCP port directly instead of nginx over TLS",
    )
    load.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    load.add_argument(
        "--keep-rows",
        action="store_true",
        help="leave the loaded rows in the table after the audit (default: truncate it)",
    )
    load.add_argument(
        "--out", type=Path, default=None, help="run folder (default reports/<run-id>)"
    )
    load.add_argument(
        "--web", action="store_true", help="serve Locust's web UI instead, until Ctrl-C"
    )
    load.add_argument(
        "--web-port", type=int, default=8089, help="web UI port on 127.0.0.1 (default 8089)"
    )
    load.set_defaults(handler=run)


def _default_mix() -> str:
    import strategies

    return ",".join(f"{name}:1" for name in strategies.names())


def config_from(args: argparse.Namespace) -> loadrun.LoadConfig:
    return loadrun.LoadConfig(
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time_s=loadrun.parse_duration(args.run_time),
        rows=args.rows,
        strategy_mix=args.strategy_mix or _default_mix(),
        reject_share=args.reject_share,
        shape=args.shape,
        table=args.table,
        body=args.body,
        nginx=not args.no_nginx,
        workers=args.workers,
        keep_rows=args.keep_rows,
    ).validate()


def report(outcome: loadrun.LoadOutcome) -> None:
    """A short plain-text account: the numbers, then every audit check."""
    summary = outcome.summary
    print(f"run folder: {outcome.run_dir}")
    if summary is not None:

        def ms(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.0f} ms"

        print(
            f"requests: {summary.requests} ({summary.failures} failed, {summary.rejected} bad "
            f"uploads refused as they must be), {summary.requests_per_s:.1f} req/s"
        )
        print(f"rows acknowledged: {summary.rows}, {summary.rows_per_s:,.0f} rows/s")
        print(
            f"latency: p50 {ms(summary.p50_ms)}, p95 {ms(summary.p95_ms)}, "
            f"p99 {ms(summary.p99_ms)}; in-database p50 {ms(summary.server_in_db_p50_ms)}"
        )
        print(f"reports: {outcome.run_dir / summary.html_report}, {summary.stats_csv}")
    else:
        print("no requests were made; nothing to report")
    if outcome.timed_out:
        print("Locust did not stop by itself and was killed")
    elif outcome.locust_exit != 0:
        print(f"Locust exited with status {outcome.locust_exit} (failed requests)")
    print(f"audit: {'PASSED' if outcome.audit.passed else 'FAILED'}")
    for check in outcome.audit.checks:
        print(f"  [{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    if args.web:
        if not 1 <= args.web_port <= 65535:
            raise LabError("--web-port must be a TCP port number", code="bad_option")
        outcome = loadrun.run_web(config, web_port=args.web_port, out=args.out)
    else:
        outcome = loadrun.run_headless(config, out=args.out)
    report(outcome)
    return 0 if outcome.ok else 1
