"""``lab serve``: the whole stack in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import psutil

from lab.config import ENV_PORT, Settings
from lab.database import resolve_url
from service.auth import policy
from service.stack import running_stack
from service.tls import ensure_certificate


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the upload service: database, migrations, gunicorn, nginx (if installed)",
    )
    serve.add_argument("--workers", type=int, help="gunicorn workers (default: one per core)")
    serve.add_argument(
        "--port",
        type=int,
        help="gunicorn's TCP port on 127.0.0.1 (default: LAB_PORT if set, else free)",
    )
    serve.add_argument("--no-nginx", action="store_true", help="gunicorn only, no TLS proxy")
    serve.set_defaults(handler=serve_command)

    tls = subparsers.add_parser(
        "tls", help="make the development TLS certificate for nginx (LAB_HOME/tls)"
    )
    tls.set_defaults(handler=tls_command)


def tls_command(args: argparse.Namespace) -> int:
    cert, key = ensure_certificate(Settings.from_env().home / "tls")
    print(f"certificate {cert}\nkey         {key}")
    return 0


def serve_command(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    policy(settings)  # a production service without tokens stops here, before anything runs
    url = resolve_url(settings)  # starts the embedded cluster unless DATABASE_URL is set
    # Ctrl-C and SIGTERM (e.g. from a process manager) stop the stack; SIGINT is set
    # explicitly because a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = args.port or (settings.port if os.environ.get(ENV_PORT) else None)
    with running_stack(
        url,
        workers=args.workers,
        nginx=not args.no_nginx,
        home=settings.home,
        console=True,
        port=port,
    ) as stack:
        print(f"upload service: {stack.http_url}  (gunicorn, pid {stack.gunicorn_pid})")
        if stack.https_url:
            print(f"through nginx:  {stack.https_url}  (TLS, CA file {stack.ca_file})")
        else:
            print("nginx: not started (not installed or --no-nginx)")
        print(f"try: curl -F file=@data.csv {stack.http_url}/upload    Ctrl-C stops")
        try:
            while _alive(stack.gunicorn_pid):
                time.sleep(1)
            print("gunicorn exited; stopping", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping…")
    return 0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
