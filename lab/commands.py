"""``lab db …`` and ``lab gen-csv``: the foundation's subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lab.cluster import INGEST_SETTINGS, EmbeddedCluster
from lab.config import Settings
from lab.database import connect, resolve_url
from lab.errors import LabError
from lab.fakedata import write_csv
from lab.migrate import migrate


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="manage the database (embedded unless DATABASE_URL)")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")

    up = db_sub.add_parser("up", help="start the embedded cluster, or report the running one")
    up.add_argument("--port", type=int, help="TCP port on 127.0.0.1 (default: a free one)")
    up.set_defaults(handler=db_up)

    down = db_sub.add_parser("down", help="stop the embedded cluster")
    down.set_defaults(handler=db_down)

    status = db_sub.add_parser("status", help="show where the database is and its settings")
    status.set_defaults(handler=db_status)

    url = db_sub.add_parser("url", help="print the connection URL")
    url.add_argument("--tcp", action="store_true", help="127.0.0.1:PORT instead of the socket")
    url.set_defaults(handler=db_url)

    mig = db_sub.add_parser("migrate", help="apply pending migrations/NNN_*.sql")
    mig.set_defaults(handler=db_migrate)

    gen = subparsers.add_parser("gen-csv", help="write N fake rows of ingest.records as CSV")
    gen.add_argument("rows", type=_non_negative, help="number of data rows")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    gen.add_argument(
        "--quote-share",
        type=_share,
        default=0.05,
        help="share of names that need CSV quoting (default 0.05)",
    )
    gen.add_argument(
        "--null-share",
        type=_share,
        default=0.02,
        help="share of nullable fields left empty, i.e. NULL (default 0.02)",
    )
    gen.add_argument("-o", "--output", help="file to write (default: stdout)")
    gen.set_defaults(handler=gen_csv)


def _non_negative(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _embedded(settings: Settings) -> EmbeddedCluster | None:
    return None if settings.database_url else EmbeddedCluster(settings.home)


def db_up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    cluster = _embedded(settings)
    if cluster is None:
        url = resolve_url(settings)
        with connect(url):
            pass
        print("DATABASE_URL is set and reachable; no embedded cluster to start")
        return 0
    was_running = cluster.status().running
    status = cluster.up(args.port or settings.pg_port)
    verb = "already running" if was_running else "started"
    print(
        f"embedded PostgreSQL {verb}: pid {status.pid}, port {status.port}, "
        f"socket {status.socket_dir}, data {status.pgdata}"
    )
    return 0


def db_down(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    cluster = _embedded(settings)
    if cluster is None:
        print("DATABASE_URL is set; nothing to stop")
        return 0
    print("stopped" if cluster.down() else "not running")
    return 0


def db_status(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    cluster = _embedded(settings)
    if cluster is not None:
        status = cluster.status()
        print(f"embedded cluster: {'running' if status.running else 'stopped'}")
        print(f"  data:   {status.pgdata}")
        print(f"  socket: {status.socket_dir}")
        print(f"  port:   {status.port}")
        if not status.running:
            return 0
        url = cluster.url()
    else:
        url = resolve_url(settings)
        print("database: DATABASE_URL")
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        print(f"  server: PostgreSQL {row[0] if row else '?'}")
        print("  settings:")
        for name in INGEST_SETTINGS:
            try:
                value = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()
            except LabError:
                value = None
            shown = value[0] if value and value[0] is not None else "(unavailable)"
            print(f"    {name} = {shown}")
    return 0


def db_url(args: argparse.Namespace) -> int:
    print(resolve_url(tcp=args.tcp))
    return 0


def db_migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    applied = migrate(resolve_url(settings), settings.migrations_dir)
    if applied:
        for migration in applied:
            print(f"applied {migration.path.name}")
    else:
        print("up to date")
    return 0


def gen_csv(args: argparse.Namespace) -> int:
    options = {"seed": args.seed, "quote_share": args.quote_share, "null_share": args.null_share}
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            write_csv(out, args.rows, **options)
    else:
        out = open(sys.stdout.fileno(), "w", newline="", encoding="utf-8", closefd=False)  # noqa: SIM115
        with out:
            write_csv(out, args.rows, **options)
    return 0
