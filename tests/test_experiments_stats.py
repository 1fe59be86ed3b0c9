"""Statistics and run comparison on synthetic samples (no database needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import results, stats
from experiments.measure import Sample
from lab.cli import main
from tests.samples import psql, sample


def _samples(run_id: str, values: np.ndarray, name: str = "psycopg-text") -> list[Sample]:
    return [
        sample(
            run_id=run_id,
            name=name,
            rep=i,
            in_db_ms=float(v),
            wall_ms=float(v) * 1.3,
            total_ms=float(v) * 1.2,
        )
        for i, v in enumerate(values)
    ]


def _lognormal(seed: int, n: int = 15, median: float = 100.0) -> np.ndarray:
    return median * np.random.default_rng(seed).lognormal(0.0, 0.1, n)


def test_describe_median_ci_percentiles_and_budget_share() -> None:
    values = [40.0, 45.0, 48.0, 52.0, 60.0, 47.0, 49.0, 51.0, 46.0]
    d = stats.describe(values, budget_ms=50.0)
    assert d.n == 9
    assert d.median == 48.0
    assert d.ci_low <= d.median <= d.ci_high
    assert d.ci_low >= 40.0 and d.ci_high <= 60.0
    assert d.p95 == pytest.approx(np.percentile(values, 95))
    assert d.over_budget == pytest.approx(3 / 9)
    empty = stats.describe([], 50.0)
    assert empty.n == 0 and np.isnan(empty.median)


def test_compare_flags_a_2x_slowdown_and_not_the_same_distribution() -> None:
    base = results.to_frame(_samples("a", _lognormal(1)))
    slow = results.to_frame(_samples("b", 2 * _lognormal(2)))
    same = results.to_frame(_samples("c", _lognormal(3)))

    flagged = stats.compare(base, slow, threshold=1.10, alpha=0.05)
    assert len(flagged) == 1
    row = flagged.iloc[0]
    assert row["ratio"] == pytest.approx(2.0, rel=0.15)
    assert row["p_value"] < 0.001
    assert bool(row["significant"]) and bool(row["regression"])

    quiet = stats.compare(base, same, threshold=1.10, alpha=0.05)
    assert not bool(quiet.iloc[0]["significant"])
    assert not bool(quiet.iloc[0]["regression"])


def test_report_compare_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    for run_id, values in (
        ("run-a", _lognormal(1)),
        ("run-b", 2 * _lognormal(2)),
        ("run-c", _lognormal(3)),
    ):
        results.save(reports / run_id, run_id, {"budget_ms": 50.0}, _samples(run_id, values))
    assert main(["report", "compare", "run-a", "run-b", "--out", str(reports)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["report", "compare", "run-a", "run-c", "--out", str(reports)]) == 0
    assert "no significant regression" in capsys.readouterr().out
    # A faster B is significant but not a regression.
    assert main(["report", "compare", "run-b", "run-a", "--out", str(reports)]) == 0


def test_budget_checks_pick_the_best_strategy_and_compare_with_psql() -> None:
    samples = _samples("r", [40.0, 42.0, 44.0], "fast") + _samples("r", [90.0, 95.0], "slow")
    samples += [psql(i, in_db_ms=80.0, wall_ms=100.0) for i in range(3)]
    table = stats.summary(results.to_frame(samples), budget_ms=50.0)
    gate, vs_psql, http, scale = stats.budget_checks(table, 50.0, 100_000)
    assert gate.passed is True and "fast" in gate.measured and "42.0 ms" in gate.measured
    # 0.53x misses the default 0.20x target, passes a declared 1.00x one.
    assert vs_psql.passed is False and vs_psql.measured.startswith("0.53x")
    assert vs_psql.target == "<= 0.20x"
    lenient = stats.Targets.from_dict({"psql_ratio": 1.0})
    assert stats.budget_checks(table, 50.0, 100_000, lenient)[1].passed is True
    assert http.passed is None  # no HTTP samples in this run
    assert scale.passed is None and scale.measured == "not measured in this run"
    assert stats.budget_checks(table, 30.0, 100_000)[0].passed is False


def _http(rows: int, walls: list[float], rss: float | None = None) -> list[Sample]:
    return [
        sample(path="http", rows=rows, rep=i, in_db_ms=w / 2, wall_ms=w, rss_growth_mb=rss)
        for i, w in enumerate(walls)
    ]


def test_scale_check_compares_throughput_with_the_reference_http_cell() -> None:
    ref = _http(100_000, [400.0, 410.0, 420.0])  # ~244k rows/s
    slow = _http(10_000_000, [60_000.0])  # ~167k rows/s: 0.68x, a miss
    fine = _http(10_000_000, [45_000.0])  # ~222k rows/s: 0.91x, no miss
    missed = stats.budget_checks(stats.summary(results.to_frame(ref + slow), 50.0), 50.0, 100_000)
    assert missed[3].passed is False and missed[3].measured.startswith("0.68x")
    ok = stats.budget_checks(stats.summary(results.to_frame(ref + fine), 50.0), 50.0, 100_000)
    # Throughput holds; RSS is not in the samples, so the line cannot pass on its own.
    assert ok[3].passed is None and ok[3].measured.startswith("0.91x")
    assert "RSS growth not recorded" in ok[3].measured


@pytest.mark.parametrize(("rss", "passed"), [(12.0, True), (180.0, False)])
def test_scale_check_judges_worker_rss_growth(rss: float, passed: bool) -> None:
    ref = _http(100_000, [400.0, 410.0, 420.0])
    fine = _http(10_000_000, [45_000.0], rss=rss)
    check = stats.budget_checks(stats.summary(results.to_frame(ref + fine), 50.0), 50.0, 100_000)
    assert check[3].passed is passed
    assert f"{rss:.1f} MB" in check[3].measured


def test_results_round_trip_and_schema_version(tmp_path: Path) -> None:
    samples = _samples("x", [1.0, 2.0])
    run = results.save(tmp_path / "x", "x", {"note": float("nan")}, samples)
    loaded = results.load(run.folder)
    assert loaded.samples == tuple(samples)
    assert loaded.metadata == {"note": None}
    latest = results.point_latest(tmp_path, run.folder)
    assert results.resolve("latest", tmp_path) == run.folder.resolve()
    assert latest.is_symlink()
    bad = tmp_path / "y"
    bad.mkdir()
    (bad / "results.json").write_text('{"schema_version": 99, "run_id": "y", "samples": []}')
    with pytest.raises(Exception, match="schema_version 99"):
        results.load(bad)


def test_sample_validation() -> None:
    with pytest.raises(ValueError, match="in_db_ms"):
        _samples("x", [-1.0])
    with pytest.raises(ValueError, match="must say why"):
        Sample(
            run_id="x",
            kind="strategy",
            path="inproc",
            name="n",
            rows=1,
            variant="logged",
            concurrency=1,
            rep=0,
            worker=0,
            warmup=False,
            ok=False,
        )
    with pytest.raises(ValueError, match="peer"):
        Sample(
            run_id="x",
            kind="strategy",
            path="peer",
            name="n",
            rows=1,
            variant="logged",
            concurrency=1,
            rep=0,
            worker=0,
            warmup=False,
            ok=True,
        )
