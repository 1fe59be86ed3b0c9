#!/usr/bin/env python3
"""Post one generated CSV to a running upload service N times; print mean ± stddev.

    python scripts/bench.py --rows 100000 [--url URL] [--runs 5] [--strategy NAME]

The quick check against a service you started yourself; ``lab bench`` is the full matrix.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import requests

from experiments.upload import multipart_body, upload
from lab.config import ENV_STRATEGY
from lab.fakedata import write_csv

DEFAULT_URL = "http://127.0.0.1:8000"
ENV_URL = "LAB_BENCH_URL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the file (100000)")
    parser.add_argument("--runs", type=int, default=5, help="uploads (default 5)")
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_URL, DEFAULT_URL),
        help=f"service base URL (default ${ENV_URL} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--strategy",
        default=os.environ.get(ENV_STRATEGY, "psycopg-text"),
        help="strategy name (default $LAB_STRATEGY or psycopg-text)",
    )
    parser.add_argument("--table", default="records", help="table in schema ingest (records)")
    parser.add_argument("--ca-file", default=None, help="CA certificate for an https URL")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated file")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.runs < 1:
        parser.error("--rows and --runs must be >= 1")

    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        file = Path(tmp) / f"records_{args.rows}.csv"
        with file.open("w", newline="", encoding="utf-8") as out:
            write_csv(out, args.rows, seed=args.seed)
        body = multipart_body(file)
    wall, in_db = [], []
    verify: bool | str = args.ca_file or True
    for run in range(1, args.runs + 1):
        with requests.Session() as session:
            try:
                result = upload(session, args.url, args.table, args.strategy, body, verify=verify)
            except (RuntimeError, requests.RequestException) as exc:
                print(f"bench: upload {run} failed: {exc}", file=sys.stderr)
                return 1
        wall.append(result.wall_ms)
        in_db.append(result.in_db_ms)
        print(
            f"upload {run}: {result.rows:,} rows, wall {result.wall_ms:.1f} ms, "
            f"in-DB {result.in_db_ms:.1f} ms"
        )

    def fmt(values: list[float]) -> str:
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return f"{float(np.mean(values)):.1f} ± {spread:.1f} ms"

    print(f"{args.runs} uploads of {args.rows:,} rows with {args.strategy} to {args.url}")
    print(f"wall (client): {fmt(wall)}")
    print(f"in-DB (server): {fmt(in_db)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
