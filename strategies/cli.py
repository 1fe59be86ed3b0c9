"""``lab strategies list``, ``lab strategies bench`` and ``lab compact``: the strategies
from the shell.

``bench`` is a quick comparison, not the experiment runner: it generates rows with
``lab.fakedata``, loads them with each strategy ``--runs`` times (the target truncated
before every run, one untimed warm-up first) and prints per-strategy medians.
"""

from __future__ import annotations

import argparse
import io
import statistics
from typing import Any

from lab.database import connect, resolve_url
from lab.errors import LabError
from lab.fakedata import csv_bytes
from strategies import REGISTRY, get, names
from strategies.base import DirectConnector, LoadResult


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("strategies", help="list or quickly benchmark insert strategies")
    sub = parser.add_subparsers(dest="strategies_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="show the registered strategies")
    listing.set_defaults(handler=list_strategies)

    bench = sub.add_parser("bench", help="median in-DB and total ms per strategy")
    bench.add_argument("--rows", type=_positive, default=100_000, help="rows (default 100000)")
    bench.add_argument("--runs", type=_positive, default=5, help="timed runs (default 5)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    bench.add_argument("--seed", type=int, default=0, help="fake-data seed (default 0)")
    bench.add_argument("--table", default="records", help="ingest table (default records)")
    bench.add_argument(
        "--strategy",
        action="append",
        metavar="NAME",
        help=f"strategy to run, repeatable (default: all of {', '.join(names())})",
    )
    bench.set_defaults(handler=bench_strategies)

    compact = subparsers.add_parser(
        "compact",
        help="fold the part tables of parallel-freeze/parallel-text back into their targets; "
        "drop those of loads that died before publishing them",
    )
    compact.add_argument(
        "tables", nargs="*", metavar="TABLE", help="ingest tables (default: every one)"
    )
    compact.set_defaults(handler=compact_tables)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def compact_tables(args: argparse.Namespace) -> int:
    """``parts.compact`` per table, one transaction each, then ``parts.drop_orphans``;
    prints what moved and what was dropped."""
    import time

    from strategies import catalog, parts

    with connect(resolve_url(), autocommit=True) as conn:
        tables = args.tables or catalog.ingest_tables(conn)
        targets = [catalog.resolve(conn, t) for t in tables]  # unknown name: error first
        for target in targets:
            started = time.perf_counter()
            done = parts.compact(conn, target)
            ms = (time.perf_counter() - started) * 1000
            print(
                f"{target.schema}.{target.table}: folded {done.parts} part tables "
                f"({done.rows} rows) in {ms:.0f} ms"
            )
        orphans = parts.drop_orphans(conn)
        print(f"dropped {len(orphans)} orphaned part tables (of loads that died unpublished)")
    return 0


def list_strategies(args: argparse.Namespace) -> int:
    width = max(len(n) for n in REGISTRY)
    for name, cls in REGISTRY.items():
        kind = "streaming" if cls.streaming else "buffering"
        print(f"{name:<{width}}  {kind:<9}  {cls.description}")
    return 0


def bench_strategies(args: argparse.Namespace) -> int:
    chosen: list[str] = args.strategy or names()
    for name in chosen:
        get(name)  # unknown names fail before any work
    url = resolve_url()
    db = DirectConnector(url)
    data = csv_bytes(args.rows, seed=args.seed)
    print(f"{args.rows} rows, {len(data) / 1e6:.1f} MB of CSV, {args.runs} runs per strategy")
    header = f"{'strategy':<18}{'in-DB ms':>10}{'total ms':>10}{'parse ms':>10}{'commit ms':>10}"
    print(header)
    print("-" * len(header))
    for name in chosen:
        results = [_run(name, data, args.table, db, url) for _ in range(args.warmup + args.runs)][
            args.warmup :
        ]
        med = _medians(results)
        print(
            f"{name:<18}{med['in_db_ms']:>10.1f}{med['total_ms']:>10.1f}"
            f"{med['parse_ms']:>10.1f}{med['commit_ms']:>10.1f}"
        )
    return 0


def _run(name: str, data: bytes, table: str, db: DirectConnector, url: str) -> LoadResult:
    from strategies import catalog, parts

    with connect(url, autocommit=True) as conn:
        parts.empty_target(conn, catalog.resolve(conn, table))
    result = get(name).load(io.BytesIO(data), table, db)
    if result.rows == 0:
        raise LabError(f"{name} loaded no rows", code="bench_failed")
    return result


def _medians(results: list[LoadResult]) -> dict[str, float]:
    fields = ("parse_ms", "in_db_ms", "commit_ms", "total_ms")
    return {f: statistics.median(getattr(r.timings, f) for r in results) for f in fields}
