"""Fake data: deterministic, parseable, and with the requested share of tricky fields."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

from lab.config import PROJECT_ROOT
from lab.fakedata import HEADER, csv_bytes


def _parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_script_writes_100k_rows_deterministically() -> None:
    cmd = [
        sys.executable,
        str(PROJECT_ROOT / "scripts" / "make_fake_csv.py"),
        "100000",
        "--seed",
        "1",
    ]
    first = subprocess.run(cmd, capture_output=True, check=True).stdout
    second = subprocess.run(cmd, capture_output=True, check=True).stdout
    assert first == second
    rows = _parse(first)
    assert rows[0] == list(HEADER)
    assert len(rows) == 100_001
    assert {len(r) for r in rows} == {10}


def test_seeds_differ() -> None:
    assert csv_bytes(50, seed=1) != csv_bytes(50, seed=2)


def test_quote_and_null_shares_are_controllable() -> None:
    plain = _parse(csv_bytes(2000, seed=5, quote_share=0.0, null_share=0.0))[1:]
    assert not any("," in r[2] or "\n" in r[2] or '"' in r[2] for r in plain)
    assert all(all(field != "" for field in r) for r in plain)

    tricky = _parse(csv_bytes(2000, seed=5, quote_share=0.5, null_share=0.1))[1:]
    names = [r[2] for r in tricky]
    assert sum(1 for n in names if "," in n or "\n" in n or '"' in n) > 400
    assert any(ord(ch) > 0xFFFF for n in names for ch in n)  # 4-byte UTF-8
    empties = sum(1 for r in tricky for field in r if field == "")
    assert 0.05 < empties / (len(tricky) * 6) < 0.15
