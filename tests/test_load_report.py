"""The bench HTML report shows a load section when load results exist."""

from __future__ import annotations

from pathlib import Path

from experiments import loadresults, report
from experiments.results import Run


def _summary(run_id: str) -> loadresults.LoadSummary:
    endpoint = loadresults.EndpointStats(
        "/tables/records/upload [psycopg-text]", 90, 0, 9.0, 120.0, 400.0, 110.0, 240.0, 380.0
    )
    return loadresults.LoadSummary(
        run_id=run_id,
        created_at="2026-01-01T00:00:00+00:00",
        target="https://127.0.0.1:4443",
        shape="spike",
        users=4,
        run_time_s=30,
        rows_per_upload=10_000,
        strategy_mix="psycopg-text:1",
        requests=100,
        failures=0,
        requests_per_s=10.0,
        rows=900_000,
        rows_per_s=87_654.3,
        p50_ms=110.0,
        p95_ms=240.0,
        p99_ms=380.0,
        rejected=10,
        audit_passed=True,
        server_in_db_p50_ms=41.5,
        server_in_db_p95_ms=70.25,
        endpoints=(endpoint,),
        html_report="locust.html",
        stats_csv="locust_stats.csv",
    )


def _render(folder: Path) -> str:
    folder.mkdir(exist_ok=True)
    return report.render(Run(folder.name, {}, (), folder)).read_text()


def test_report_without_load_results_says_how_to_get_them(tmp_path):
    html = _render(tmp_path / "bench-1")
    assert 'id="load"' in html and "No load results" in html


def test_report_shows_its_own_or_the_newest_load_run(tmp_path):
    load_dir = tmp_path / "load-20260101T000000Z"
    load_dir.mkdir()
    loadresults.write(load_dir, _summary(load_dir.name), {})

    html = _render(tmp_path / "bench-2")
    assert "The newest" in html and load_dir.name in html
    for shown in ("87,654", "10.0", ">240<", ">380<", "41.5", "PASS", "spike"):
        assert shown in html
    assert "/tables/records/upload [psycopg-text]" in html

    own = tmp_path / "bench-3"
    own.mkdir()
    loadresults.write(own, _summary("load-own"), {})
    html = _render(own)
    assert "This run's" in html and "load-own" in html
