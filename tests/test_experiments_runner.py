"""The whole ``lab bench`` pipeline on a tiny matrix against the real embedded PostgreSQL:
samples -> DataFrame -> CSV/JSON -> charts -> HTML, then the HTML in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from experiments import results
from experiments.measure import COLUMNS
from lab.cli import main
from lab.config import PROJECT_ROOT

TINY = """
[settings]
seed = 7
warmup = 1
budget_ms = 50.0
reference_rows = 300

[tiny]
description = "a few hundred rows, 2 repetitions"

[[tiny.cells]]
path = "inproc"
names = ["psycopg-text", "no-such-strategy"]
rows = [300]
variants = ["logged", "pk"]
reps = 2

[[tiny.cells]]
path = "inproc"
names = ["psycopg-text"]
rows = [120]
reps = 2

[[tiny.cells]]
path = "peer"
names = "*"
rows = [300]
reps = 2
"""


@pytest.fixture(scope="module")
def tiny_run(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """Runs ``lab bench`` once on the tiny matrix; (reports dir, exit status, stdout)."""
    base = tmp_path_factory.mktemp("bench")
    matrix = base / "tiny.toml"
    matrix.write_text(TINY)
    reports = base / "reports"
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", db_url)
    import contextlib
    import io

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            status = main(
                [
                    "bench",
                    "--matrix",
                    "tiny",
                    "--matrix-file",
                    str(matrix),
                    "--out",
                    str(reports),
                    "--no-progress",
                    "--path",
                    "inproc",
                    "--path",
                    "peer",
                ]
            )
    finally:
        mp.undo()
    return reports, status, out.getvalue()


def documented_columns() -> list[str]:
    text = (PROJECT_ROOT / "docs" / "experiments.md").read_text()
    section = text.split("## Result columns", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.M)


def test_runner_writes_dataframe_files_charts_and_html(tiny_run: tuple[Path, int, str]) -> None:
    reports, status, stdout = tiny_run
    assert status == 0
    folder = (reports / "latest").resolve()
    assert folder.parent == reports.resolve()

    # The tidy DataFrame: exactly the documented columns, raw samples including warm-ups.
    frame = pd.read_csv(folder / "results.csv")
    assert list(frame.columns) == list(COLUMNS) == documented_columns()
    run = results.load(folder)
    df = run.frame()
    ok = df[df["ok"]]
    text = ok[(ok["name"] == "psycopg-text") & (ok["rows"] == 300)]
    assert sorted(text["variant"].unique()) == ["logged", "pk"]
    assert len(text) == 2 * (2 + 1)  # two variants x (2 reps + 1 warm-up)
    assert text["warmup"].sum() == 2
    assert (text["rows_loaded"] == 300).all()
    assert (ok["in_db_ms"] > 0).all() and (ok["wall_ms"] >= ok["in_db_ms"]).all()
    assert set(df.loc[df["kind"] == "peer", "name"]) == {
        "psql-copy",
        "pandas-to-sql",
        "adbc-ingest",
    }
    peers = ok[ok["kind"] == "peer"]
    assert (peers["rows_loaded"] == 300).all() and peers["in_db_ms"].notna().all()

    # An unknown strategy is a recorded failure, not a crash.
    failed = df[~df["ok"]]
    assert set(failed["name"]) == {"no-such-strategy"}
    assert failed["error"].str.contains("unknown strategy").all()

    # The JSON: schema version, metadata, raw samples.
    doc = json.loads((folder / "results.json").read_text())
    assert doc["schema_version"] == results.SCHEMA_VERSION
    assert doc["run_id"] == folder.name
    meta = doc["metadata"]
    for key in ("git_sha", "host", "cpu_count", "cpu_model", "python", "drivers", "started_at"):
        assert meta[key], key
    assert meta["server"]["server_version"]
    assert meta["server"]["settings"]["wal_level"]
    assert "psycopg" in meta["drivers"]
    assert len(doc["samples"]) == len(df)

    # Charts and the self-contained HTML.
    for slug in ("in_db", "phases", "scaling", "peers"):
        with Image.open(folder / "charts" / f"{slug}.png") as image:
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
            assert image.size[0] > 300 and len(np.unique(pixels, axis=0)) > 50
    html = (folder / "index.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4
    for name in ("psycopg-text", "psql-copy", "pandas-to-sql", "adbc-ingest", "no-such-strategy"):
        assert name in html
    assert "Budget: 50 ms" in html
    assert "unknown strategy" in html

    # The markdown summary and the report path are printed.
    assert "| psycopg-text | inproc | 300 | logged |" in stdout
    assert "psql-copy" in stdout and "Budget:" in stdout
    assert f"report: {folder}/index.html" in stdout


def test_report_rerenders_latest(tiny_run: tuple[Path, int, str], capsys) -> None:
    reports, _, _ = tiny_run
    html = reports / "latest" / "index.html"
    html.unlink()
    assert main(["report", "--out", str(reports)]) == 0
    assert html.exists()
    assert "| psycopg-text | inproc | 300 | logged |" in capsys.readouterr().out


def test_gate_fails_when_budget_missed(db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    matrix = tmp_path / "tiny.toml"
    matrix.write_text(TINY)
    common = [
        "bench",
        "--matrix",
        "tiny",
        "--matrix-file",
        str(matrix),
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        "--strategy",
        "psycopg-text",
        "--path",
        "inproc",
        "--rows",
        "300",
        "--variant",
        "logged",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--gate",
    ]
    assert main([*common, "--budget-ms", "0.0001"]) == 1
    assert main([*common, "--budget-ms", "1000000"]) == 0


def _screenshot(chromium: str, html: Path, png: Path, profile: Path) -> Image.Image:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1280,7000",  # the whole report, charts below the budget section
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(png).convert("RGB")


def _colored_pixels(image: Image.Image) -> tuple[int, int]:
    """(pixels with visible colour saturation, distinct colours among them)."""
    pixels = np.asarray(image, dtype=np.int16).reshape(-1, 3)
    colored = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 40]
    return len(colored), len(np.unique(colored, axis=0))


def test_html_renders_charts_in_headless_chromium(
    tiny_run: tuple[Path, int, str], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    reports, _, _ = tiny_run
    html = (reports / "latest" / "index.html").resolve()
    shot = _screenshot(chromium, html, tmp_path / "report.png", tmp_path / "p1")
    assert shot.size == (1280, 7000)
    with_charts, distinct = _colored_pixels(shot)

    # The same page with the chart images emptied: what colour remains is not from charts.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', html.read_text()))
    without_charts, _ = _colored_pixels(
        _screenshot(chromium, bare, tmp_path / "bare.png", tmp_path / "p2")
    )
    print(
        f"colored pixels with charts {with_charts} ({distinct} colours), without {without_charts}"
    )
    assert with_charts > 20_000, with_charts
    assert distinct > 100, distinct
    assert with_charts > 5 * max(without_charts, 1), (with_charts, without_charts)


def test_http_cell_without_service_is_a_recorded_failure(db_url: str, tmp_path: Path) -> None:
    from experiments.matrix import Cell
    from experiments.runner import Runner, generate_files

    runner = Runner(
        db_url,
        "t",
        generate_files([50], tmp_path, seed=1),
        http=None,
        http_unavailable="the upload service is not available",
    )
    samples = runner.run_cell(Cell("http", "psycopg-text", 50, "logged", 1, reps=3, warmup=1))
    assert len(samples) == 1
    assert not samples[0].ok and "not available" in samples[0].error


def test_an_interleave_group_runs_one_repetition_of_each_cell_per_round(
    db_url: str, tmp_path: Path
) -> None:
    from experiments.matrix import Cell
    from experiments.runner import Runner, generate_files

    runner = Runner(db_url, "t", generate_files([50], tmp_path, seed=1))
    cells = [
        Cell("inproc", "psycopg-text", 50, "logged", 1, reps=3, warmup=1, interleave="g"),
        Cell("peer", "psql-copy", 50, "logged", 1, reps=2, warmup=1, interleave="g"),
        Cell("inproc", "no-such-strategy", 50, "logged", 1, reps=3, warmup=1, interleave="g"),
    ]
    done: list[int] = []
    samples = runner.run_batch(cells, done.append)
    # Samples come back in cell order: every repetition of the first, then the second...
    assert [(s.name, s.rep, s.warmup) for s in samples if s.ok] == [
        ("psycopg-text", 0, True),
        ("psycopg-text", 0, False),
        ("psycopg-text", 1, False),
        ("psycopg-text", 2, False),
        ("psql-copy", 0, True),
        ("psql-copy", 0, False),
        ("psql-copy", 1, False),
    ]
    # ... but they ran in rounds: each round one repetition of every cell still running,
    # starting one cell further on. The unknown strategy failed in round 0 and dropped out.
    ran = sorted((s for s in samples if s.ok), key=lambda s: s.started_at)
    assert [s.name for s in ran] == [
        "psycopg-text",
        "psql-copy",  # round 0 (the failure came last)
        "psql-copy",
        "psycopg-text",  # round 1 starts one further on
        "psycopg-text",
        "psql-copy",  # round 2
        "psycopg-text",  # round 3: psql-copy is done
    ]
    (failed,) = [s for s in samples if not s.ok]
    assert failed.name == "no-such-strategy" and "valid" in failed.error
    assert sum(done) == 4 + 3 + 4  # the failed cell's skipped repetitions count as done
