"""CPU per side of a load, read from /proc for real (experiments/cpu.py), and the floor the
report derives from it (stats.CpuFloor)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from experiments import report, results, stats
from experiments.cpu import CpuWatch, parse_stat, postmaster_pid, snapshot
from experiments.measure import Sample
from tests.samples import psql, sample


def _burn(ready, go, done, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Wait for ``go``, burn ``seconds`` of CPU, say ``ready`` again, stay alive until
    ``done`` (a process that exited would be seen through its parent only)."""
    ready.set()
    go.wait(30)
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    ready.set()
    done.wait(30)


def test_parse_stat_counts_fields_after_a_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "42"] + ["0"] * 9 + ["100", "50", "7", "3"] + ["0"] * 2 + ["1"] + ["0"] * 30
    stat = parse_stat("1234 (a (b) c) " + " ".join(fields))
    assert stat.ppid == 42 and stat.threads == 1
    assert stat.own == pytest.approx(150 / os.sysconf("SC_CLK_TCK"))
    assert stat.reaped == pytest.approx(10 / os.sysconf("SC_CLK_TCK"))


def test_a_childs_cpu_is_its_own_side_not_its_parents() -> None:
    ctx = multiprocessing.get_context("fork")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_burn, args=(ready, go, done, 0.3))
    child.start()
    try:
        ready.wait(10)
        ready.clear()
        watch = CpuWatch({"client": os.getpid(), "service": child.pid})
        go.set()
        ready.wait(10)
        used = watch.used_ms()
        # The child burned 300 ms; the parent only waited. The child is a descendant of
        # the client, but a named root of its own: counted once, on its side.
        assert used["cpu_service_ms"] is not None and 250 <= used["cpu_service_ms"] <= 400
        assert used["cpu_client_ms"] is not None and used["cpu_client_ms"] < 150
        assert set(used) == {"cpu_client_ms", "cpu_service_ms", "cpu_serial_ms"}  # watched only
        # The child is single-threaded: it is the busiest process.
        assert used["cpu_serial_ms"] == pytest.approx(used["cpu_service_ms"], abs=20)
    finally:
        go.set()
        done.set()
        child.join(10)


def test_a_process_born_during_the_load_counts_whole() -> None:
    """A backend of a connection opened inside the window: all of its CPU is the load's."""
    ctx = multiprocessing.get_context("fork")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    watch = CpuWatch({"client": os.getpid()})
    child = ctx.Process(target=_burn, args=(ready, go, done, 0.3))
    child.start()
    try:
        ready.wait(10)
        ready.clear()
        go.set()
        ready.wait(10)
        used = watch.used_ms()
        assert used["cpu_serial_ms"] is not None and 250 <= used["cpu_serial_ms"] <= 400
        assert used["cpu_client_ms"] is not None and used["cpu_client_ms"] >= 250
    finally:
        go.set()
        done.set()
        child.join(10)


_REAPING_PARENT = """
import os, sys, time
sys.stdin.readline()  # go
pid = os.fork()
if pid == 0:
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    os._exit(0)
os.waitpid(pid, 0)
print("reaped", flush=True)
sys.stdin.readline()  # done
"""


def test_a_reaped_childs_cpu_counts_for_its_side_not_as_its_parents_own() -> None:
    """Like a backend whose connection closed: its single-threaded parent (the postmaster)
    reaps it. The side counts the child's CPU; the parent is not a busy process."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _REAPING_PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        time.sleep(0.2)  # started and waiting
        watch = CpuWatch({"service": parent.pid})
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "reaped"
        used = watch.used_ms()
        assert used["cpu_service_ms"] is not None and used["cpu_service_ms"] >= 250
        assert used["cpu_serial_ms"] is not None and used["cpu_serial_ms"] < 150
    finally:
        parent.stdin.close()
        parent.wait(10)


def test_unknown_roots_are_not_observed_never_zero() -> None:
    assert snapshot({"client": None, "proxy": 2**22 + 12345}).sides == {
        "client": None,
        "proxy": None,
    }
    with pytest.raises(ValueError, match="valid"):
        CpuWatch({"browser": os.getpid()})


def test_postmaster_of_the_local_server(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        pid = postmaster_pid(conn.info.backend_pid)
    assert pid is not None
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        program = f.read().split(b"\0")[0]
    assert os.path.basename(program) == b"postgres"
    assert postmaster_pid(os.getpid()) is None  # not a PostgreSQL process


def _sample(rep: int, **cpu: float) -> Sample:
    return sample(path="http", name="parallel-text", rep=rep, in_db_ms=200.0, wall_ms=240.0, **cpu)


def test_cpu_floor_and_the_http_budget_line_explain_a_cpu_bound_path() -> None:
    cpu = {"cpu_client_ms": 20.0, "cpu_proxy_ms": 30.0, "cpu_service_ms": 100.0}
    samples = [
        _sample(i, cpu_db_ms=db, cpu_serial_ms=130.0, **cpu)
        for i, db in enumerate((240.0, 250.0, 260.0))
    ]
    samples += [
        psql(
            i,
            in_db_ms=240.0,
            wall_ms=250.0,
            cpu_client_ms=20.0,
            cpu_db_ms=250.0,
            cpu_serial_ms=250.0,
        )
        for i in range(3)
    ]
    table = stats.summary(results.to_frame(samples), 50.0)
    row = table[table["name"] == "parallel-text"].iloc[0]
    floor = stats.cpu_floor(row, cores=2)
    assert floor is not None
    assert floor.sides == {"client": 20.0, "proxy": 30.0, "service": 100.0, "database": 250.0}
    assert floor.total_ms == 400.0 and floor.floor_ms == 200.0  # 400 ms over 2 cores
    # psql: one backend at 250 ms is the floor, not 270 / 2.
    psql_floor = stats.cpu_floor(table[table["name"] == "psql-copy"].iloc[0], cores=2)
    assert psql_floor is not None and psql_floor.floor_ms == 250.0
    assert stats.cpu_floor(row, cores=None) is None

    http = stats.budget_checks(table, 50.0, 100_000, cores=2)[2]
    assert http.passed is False and http.measured.startswith("0.96x")
    assert "floor 200 ms" in http.detail and "0.80x psql's wall" in http.detail
    assert "psql \\copy used 270 ms of CPU" in http.detail


def test_report_shows_cpu_per_side(tmp_path: Path) -> None:
    cpu = {"cpu_client_ms": 20.0, "cpu_proxy_ms": 30.0, "cpu_service_ms": 100.0}
    samples = [_sample(i, cpu_db_ms=250.0, cpu_serial_ms=130.0, **cpu) for i in range(3)]
    folder = tmp_path / "run"
    meta = {"budget_ms": 50.0, "reference_rows": 100_000, "cpu_count": 2}
    results.save(folder, "run", meta, samples)
    run = results.load(folder)
    summary = report.markdown_summary(run)
    assert "| parallel-text | http | 240.0 | 20 | 30 | 100 | 250 | 400 | 200 |" in summary
    html = report.render(run).read_text()
    assert 'id="cpu"' in html and '<td class="num">400</td>' in html
    # A run without CPU figures (schema 2 and older) says so instead of an empty table.
    results.save(tmp_path / "old", "old", meta, [_sample(0)])
    assert "No CPU was recorded" in report.render(results.load(tmp_path / "old")).read_text()


def test_samples_without_cpu_have_no_floor() -> None:
    table = stats.summary(results.to_frame([_sample(0), _sample(1)]), 50.0)
    assert stats.cpu_floor(table.iloc[0], cores=2) is None


def test_cpu_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="cpu_db_ms"):
        _sample(0, cpu_db_ms=-1.0)
