#!/usr/bin/env python3
"""Write a header plus N fake rows of ingest.records to stdout (same as `lab gen-csv`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["gen-csv", *sys.argv[1:]]))
