"""The server floor: real loads against the embedded PostgreSQL, the perf report parsed and
grouped, the result file round trip (old files included) and the report's section."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from experiments import floor, matrix, perfprofile, report, results
from experiments.floor import FloorResult, FloorSample
from experiments.matrix import FloorSettings
from experiments.perfprofile import Profile, Share
from lab.cli import main
from lab.errors import LabError
from lab.fakedata import write_csv
from tests.samples import sample

# A trimmed ``perf report --stdio --no-children --show-nr-samples --sort symbol`` output of
# 10 N=1 durable loads of 100k rows (perf 6.1, PostgreSQL 18), with two unknown symbols.
CANNED = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Total Lost Samples: 0
#
# Samples: 855  of event 'cpu-clock:pppH'
# Event count (approx.): 855855855
#
# Overhead       Samples  Symbol                                         IPC   [IPC Coverage]
# ........  ............  .............................................  ....................
#
    10.00%            85  [.] CopyFromBinaryOneRow                       -      -
     8.00%            68  [.] __memmove_avx512_unaligned_erms            -      -
     6.00%            51  [.] pg_utf8_verifystr                          -      -
     5.00%            43  [.] fill_val                                   -      -
     4.00%            34  [.] AllocSetAlloc                              -      -
     3.00%            26  [.] timesub.constprop.0.isra.0                 -      -
     3.00%            26  [.] pq_getmsgint                               -      -
     2.00%            17  [.] pg_checksum_page                           -      -
     2.00%            17  [.] heap_multi_insert                          -      -
     2.00%            17  [.] FlushRelationsAllBuffers                   -      -
     1.50%            13  [k] block_commit_write                         -      -
     1.50%            13  [k] exc_page_fault                             -      -
     1.00%             9  [.] SearchCatCacheInternal                     -      -
     1.00%             9  [.] 0x00007f3a2b1c4d5e                         -      -


#
# (Tip: To see callchains in a more compact form: perf report -g folded)
#
"""


def test_perf_report_is_parsed_and_grouped() -> None:
    entries = perfprofile.parse_report(CANNED)
    assert len(entries) == 14
    assert entries[0] == perfprofile.Entry(10.0, False, "CopyFromBinaryOneRow", 85)
    assert entries[10].kernel and entries[10].symbol == "block_commit_write"
    assert perfprofile.sample_count(CANNED) == 855
    assert perfprofile.sample_count("# Samples: 12K of event 'cpu-clock'\n") == 12_000
    # Clones count as their function; unknown symbols fall into "other" (kernel: "kernel").
    assert [perfprofile.category(e) for e in entries] == [
        "protocol",
        "memcpy",
        "type receive",
        "tuple forming",
        "memory",
        "type receive",
        "protocol",
        "checksums",
        "heap and buffers",
        "commit-time sync",
        "kernel",
        "kernel",
        "other",
        "other",
    ]
    shares = {s.category: s.percent for s in perfprofile.classify(entries)}
    assert list(shares) == list(perfprofile.CATEGORIES)
    assert sum(shares.values()) == pytest.approx(100.0, abs=0.05)
    # The shown lines sum to 50%: shares are rescaled to the lines shown.
    assert shares["protocol"] == pytest.approx(26.0)
    assert shares["type receive"] == pytest.approx(18.0)
    assert shares["other"] == pytest.approx(4.0)
    assert all(category in perfprofile.CATEGORIES for category in perfprofile.SYMBOLS.values())
    profile = perfprofile.from_report(CANNED, loads=10)
    assert (
        profile.taken
        and profile.samples == 428
        and profile.top[0][:2]
        == (
            "CopyFromBinaryOneRow",
            "protocol",
        )
    )
    empty = perfprofile.from_report(CANNED.split("    10.00%")[0], loads=3)
    assert not empty.taken and "no sample" in empty.reason


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("floor") / "records_3000.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        write_csv(out, 3000, seed=3)
    return path


def _parts_tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'ingest_parts'"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_floor_measures_sane_windows_and_leaves_nothing_behind(
    db_url: str, small_csv: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE ingest.records")
        conn.execute("INSERT INTO ingest.records (id, name) VALUES (-1, 'sentinel')")
    settings = FloorSettings(enabled=True, reps=2, warmup=1, connections=(1, 2), profile=False)
    ticks: list[int] = []
    result = floor.measure(db_url, small_csv, settings, ticks.append)

    assert result.error == ""
    assert sum(ticks) == settings.loads() == 12
    assert result.rows == 3000 and result.payload_bytes > 0
    assert len(result.samples) == 3 * 2 * 2  # (2 reps + 1 warm-up) x 2 N x 2 kinds
    assert sum(s.warmup for s in result.samples) == 4
    for s in result.samples:
        assert s.rows == 3000
        assert 0 < s.copy_ms <= s.commit_ms
        assert len(s.slices) == s.connections
        assert min(start for start, _, _ in s.slices) == 0
        assert max(end for _, end, _ in s.slices) == pytest.approx(s.copy_ms)
        assert all(start <= copied <= done for start, copied, done in s.slices)
    # Interleaved: each round measures every (N, kind) once, in declared order.
    assert [(s.connections, s.kind) for s in result.samples[:4]] == [
        (1, "durable"),
        (1, "unlogged"),
        (2, "durable"),
        (2, "unlogged"),
    ]
    assert result.profile.taken is False and "off" in result.profile.reason

    rows = floor.summary(result)
    assert [(r.connections, r.kind, r.n) for r in rows] == [
        (1, "durable", 2),
        (1, "unlogged", 2),
        (2, "durable", 2),
        (2, "unlogged", 2),
    ]
    assert all(r.copy_min <= r.copy_median and r.commit_min <= r.commit_median for r in rows)
    assert "budget" in floor.verdict(rows, 50.0)

    assert _parts_tables(db_url) == []
    with psycopg.connect(db_url, autocommit=True) as conn:
        left = conn.execute("SELECT id, name FROM ingest.records").fetchall()
    assert left == [(-1, "sentinel")]


def test_a_failed_load_is_recorded_and_stops_the_floor(db_url: str, small_csv: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA ingest_parts")
    try:
        settings = FloorSettings(enabled=True, reps=1, warmup=0, connections=(2,))
        result = floor.measure(db_url, small_csv, settings)
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ingest_parts")
    assert result.samples == () and "ingest_parts" in result.error
    assert not result.profile.taken and "failure" in result.profile.reason
    view = report.floor_view(results.Run("r", {}, (), Path("."), result), 50.0)
    assert view["error"] and view["verdict"] == "The floor was not measured in this run."

    wrong = small_csv.with_name("wrong_header.csv")
    wrong.write_text("a,b\n1,2\n")
    result = floor.measure(db_url, wrong, FloorSettings(enabled=True, reps=1))
    assert result.samples == () and result.rows == 0 and result.error.startswith("LabError")


def test_profile_with_real_perf(db_url: str, tmp_path: Path) -> None:
    reason = perfprofile.probe()
    if reason is not None:
        pytest.skip(reason)
    csv = tmp_path / "records_30000.csv"
    with csv.open("w", newline="", encoding="utf-8") as out:
        write_csv(out, 30_000, seed=4)
    payload, rows = floor.encode_slices(csv, db_url, 1)
    assert rows == 30_000
    before = set(Path(tempfile.gettempdir()).glob("lab-floor-perf-*"))
    ticks: list[int] = []
    profile = floor.take_profile(db_url, payload, 3, ticks.append)
    assert sum(ticks) == 3
    assert profile.taken, profile.reason
    assert profile.samples > 0 and profile.loads == 3
    shares = {s.category: s.percent for s in profile.shares}
    assert sum(shares.values()) == pytest.approx(100.0, abs=0.1)
    assert shares["protocol"] > 0 and shares["type receive"] > 0
    # perf is stopped, its data removed, and the loads' tables dropped.
    assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "perf"]
    assert set(Path(tempfile.gettempdir()).glob("lab-floor-perf-*")) == before
    assert _parts_tables(db_url) == []


def _synthetic(profile: Profile) -> FloorResult:
    copies = {(1, "durable"): [120.0, 110.0, 130.0], (2, "unlogged"): [70.0, 60.0, 65.0]}
    samples = tuple(
        FloorSample(n, kind, rep, False, 100_000, ms, ms + 20.0, "t", ((0.0, ms, ms + 20.0),))
        for (n, kind), values in copies.items()
        for rep, ms in enumerate(values)
    )
    return FloorResult(
        rows=100_000,
        csv_bytes=11_000_000,
        connections=(1, 2),
        kinds=("durable", "unlogged"),
        reps=3,
        warmup=0,
        payload_bytes=9_000_000,
        encode_ms=250.0,
        samples=samples,
        profile=profile,
    )


PROFILE = Profile(
    taken=True,
    reason="",
    loads=10,
    samples=855,
    shares=tuple(Share(c, 100.0 / len(perfprofile.CATEGORIES)) for c in perfprofile.CATEGORIES),
    top=(("CopyFromBinaryOneRow", "protocol", 9.7),),
    command=perfprofile.describe(),
)


def test_verdict_judges_the_durable_floor_and_names_unlogged_apart() -> None:
    rows = floor.summary(_synthetic(PROFILE))
    # The reference table is logged: its floor is the durable line (120 ms), even though
    # the unlogged one (65 ms) is faster.
    assert floor.verdict(rows, 50.0) == (
        "The floor of the logged reference table, 120.0 ms COPY median (N=1, durable; "
        "140.0 ms with its commit), is above the 50 ms budget (2.4x). Unlogged tables, "
        "which lose their rows on a crash, took 65.0 ms (N=2; 85.0 ms with the commit)."
    )
    assert "is within the 130 ms budget" in floor.verdict(rows, 130.0)
    assert "is above the 80 ms budget" in floor.verdict(rows, 80.0)
    unlogged_only = [r for r in rows if r.kind == "unlogged"]
    assert "no floor in this run" in floor.verdict(unlogged_only, 50.0)
    assert floor.verdict([], 50.0) == "The floor was not measured in this run."


def test_results_round_trip_with_floor_and_old_file_without(tmp_path: Path) -> None:
    result = _synthetic(PROFILE)
    run = results.save(tmp_path / "a", "a", {"budget_ms": 50.0}, [], result)
    doc = json.loads((run.folder / "results.json").read_text())
    assert doc["schema_version"] == results.SCHEMA_VERSION == 3
    assert doc["floor"]["samples"][0]["copy_ms"] == 120.0
    assert results.load(run.folder).floor == result

    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(
        json.dumps({"schema_version": 1, "run_id": "old", "metadata": {}, "samples": []})
    )
    loaded = results.load(old)
    assert loaded.floor is None
    html = report.render(loaded).read_text()
    assert "Server floor" in html and "not measured in this run" in html

    # A version-2 file: samples without CPU figures load as not observed.
    fields = sample(run_id="old", rows=100, in_db_ms=80.0).to_dict()
    v2 = {k: v for k, v in fields.items() if not k.startswith("cpu_")}
    (old / "results.json").write_text(
        json.dumps({"schema_version": 2, "run_id": "old", "metadata": {}, "samples": [v2]})
    )
    frame = results.load(old).frame()
    assert frame["cpu_db_ms"].isna().all() and frame["in_db_ms"].iloc[0] == 80.0


def test_report_shows_the_floor_section(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    run = results.save(folder, "run", {"budget_ms": 50.0, "cpu_count": 2}, [], _synthetic(PROFILE))
    html = report.render(run).read_text()
    section = html.split('id="floor"', 1)[1].split('id="tuning"', 1)[0]
    assert "120.0" in section and "110.0" in section  # N=1 durable median and min
    assert "65.0" in section and "60.0" in section and "85.0" in section
    assert "is above the 50 ms budget" in section
    assert "no Python parse or encode is in the window" in section
    assert "commit-time sync" in section and "CopyFromBinaryOneRow" in section
    text = report.markdown_summary(run)
    assert "| 2 | unlogged | 65.0 | 60.0 | 85.0 | 80.0 | 3 |" in text
    assert "Profile (N=1 durable, 855 samples): protocol" in text

    without = results.save(
        tmp_path / "np", "np", {}, [], _synthetic(Profile(False, "perf is not installed"))
    )
    html = report.render(without).read_text()
    assert "No profile in this run: perf is not installed." in html


def test_floor_settings_are_data() -> None:
    declared = matrix.load().settings.floor
    assert declared.enabled and declared.connections == (1, 2) and declared.reps == 7
    assert declared.kinds == ("durable", "unlogged") and declared.rows == 0
    assert not matrix.floor_settings(None).enabled
    small = matrix.floor_settings({"rows": 300, "reps": 1, "profile": False})
    assert small.enabled and small.rows == 300 and small.loads() == 2 * 2 * 2
    with pytest.raises(LabError, match="unknown kind"):
        matrix.floor_settings({"kinds": ["temp"]})
    with pytest.raises(LabError, match="unknown key"):
        matrix.floor_settings({"repetitions": 3})


TINY = """
[settings]
seed = 5
warmup = 0
budget_ms = 50.0
reference_rows = 200

[settings.floor]
connections = [2]
kinds = ["unlogged"]
reps = 1
warmup = 0
profile = false

[tiny]
description = "one tiny cell and a tiny floor"

[[tiny.cells]]
path = "inproc"
names = ["psycopg-text"]
rows = [200]
reps = 1
"""


def test_lab_bench_runs_the_floor_after_the_cells(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    file = tmp_path / "tiny.toml"
    file.write_text(TINY)
    reports = tmp_path / "reports"
    args = ["bench", "--matrix", "tiny", "--matrix-file", str(file), "--out", str(reports)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--no-progress"]) == 0
    run = results.load((reports / "latest").resolve())
    assert run.floor is not None and run.floor.rows == 200
    assert [(s.connections, s.kind) for s in run.floor.samples] == [(2, "unlogged")]
    assert "| 2 | unlogged |" in out.getvalue()
    assert 'id="floor"' in (run.folder / "index.html").read_text()

    with contextlib.redirect_stdout(io.StringIO()) as skipped:
        assert main([*args, "--no-progress", "--no-floor"]) == 0
    assert "Server floor: skipped: lab bench --no-floor." in skipped.getvalue()
    with contextlib.redirect_stdout(io.StringIO()) as dry:
        assert main([*args, "--dry-run"]) == 0
    assert "server floor: 200 rows, connections [2]" in dry.getvalue()
