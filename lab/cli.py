"""The ``lab`` command: one entry point, one subcommand per job.

Each area registers its own subcommands; the list below is the only wiring. A
``LabError`` from any of them ends as a one-line message and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from lab.errors import LabError

Handler = Callable[[argparse.Namespace], int]

#: Modules with a ``register(subparsers)`` function, in the order shown by ``--help``.
COMMAND_MODULES = (
    "lab.commands",
    "service.cli",
    "experiments.cli",
    "experiments.load_cli",
    "strategies.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab", description="PostgreSQL bulk-ingest performance lab."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
