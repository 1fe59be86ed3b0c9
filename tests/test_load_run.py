"""A short headless load run through the real service (gunicorn, nginx when installed)."""

from __future__ import annotations

import pytest

pytest.importorskip("service.stack")

from experiments import audit, loadresults, loadrun
from strategies import names


def test_short_headless_run_loses_nothing_and_writes_its_reports(db_url, conn, tmp_path):
    run_dir = tmp_path / "run"
    config = loadrun.LoadConfig(
        users=3,
        spawn_rate=3,
        run_time_s=8,
        rows=1000,
        strategy_mix=",".join(f"{name}:1" for name in names()),
        reject_share=0.2,
    )
    outcome = loadrun.run_headless(config, database_url=db_url, out=run_dir, say=lambda _: None)

    assert outcome.audit.passed, outcome.audit.failures()
    assert outcome.ok and not outcome.timed_out and outcome.locust_exit == 0
    summary = outcome.summary
    assert summary is not None
    assert summary.failures == 0 and summary.requests > 0
    assert summary.target.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
    # Rejected uploads happened, were recorded as failed in the ledger, and left no rows.
    assert summary.rejected > 0
    assert outcome.audit.failed_uploads == summary.rejected
    assert (
        summary.rows
        == outcome.audit.table_rows
        == summary.rows_per_upload * (outcome.audit.acknowledged_uploads)
    )
    # Locust's final stats account for every request the users wrote down.
    log = audit.read_log(run_dir / "acks.jsonl")
    assert summary.requests == len(log.acks) + log.rejected + log.errors
    assert {e.name.rsplit("[", 1)[1].rstrip("]") for e in summary.endpoints} <= {
        *names(),
        "rejected",
    }

    assert (run_dir / "locust_stats.csv").stat().st_size > 0
    assert "locust" in (run_dir / "locust.html").read_text(errors="replace").lower()
    assert loadresults.load_section(run_dir) == summary
    # Audited, then emptied; the ledger keeps the record of every upload.
    assert conn.execute("SELECT count(*) FROM ingest.records").fetchone()[0] == 0
    ledger = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FROM lab.uploads"
    ).fetchone()
    assert ledger == (len(log.acks), len(log.acks) + log.rejected)
