"""The HTTP path against the real upload service (gunicorn, nginx when installed).

Skipped where the service package is not present.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.matrix import Cell
from experiments.runner import Runner, generate_files, http_stack
from lab.config import PROJECT_ROOT

pytest.importorskip("service.stack")


def test_http_path_and_scripts_bench(db_url: str, tmp_path: Path) -> None:
    files = generate_files([200], tmp_path, seed=5)
    with http_stack(db_url) as target:
        assert target is not None
        runner = Runner(db_url, "t", files, http=target)
        cell = Cell("http", "psycopg-text", 200, "logged", 1, reps=2, warmup=1)
        samples = runner.run_cell(cell)
        assert [s.ok for s in samples] == [True, True, True], samples[0].error
        for s in samples:
            assert s.rows_loaded == 200
            assert s.http_ms is not None and s.wall_ms is not None and s.total_ms is not None
            assert s.wall_ms >= s.in_db_ms  # type: ignore[operator]
            # Every side of the path was observed (in 10 ms ticks: zero is possible).
            sides = [s.cpu_client_ms, s.cpu_service_ms, s.cpu_db_ms]
            if target.via.startswith("nginx"):
                sides.append(s.cpu_proxy_ms)
            assert all(side is not None and side >= 0 for side in sides), s

        unknown = runner.run_cell(Cell("http", "no-such-strategy", 200, "logged", 1, 2, 0))
        assert len(unknown) == 1 and not unknown[0].ok

        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        args = [
            sys.executable,
            str(PROJECT_ROOT / "scripts" / "bench.py"),
            "--rows",
            "200",
            "--runs",
            "2",
            "--url",
            target.base_url,
        ]
        if isinstance(target.verify, str):
            args += ["--ca-file", target.verify]
        out = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert out.returncode == 0, out.stderr
        assert "wall (client):" in out.stdout and "±" in out.stdout
        assert "in-DB (server):" in out.stdout
