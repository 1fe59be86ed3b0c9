"""The tuning log is data: it loads, it is checked, and every report shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import report, tuning
from experiments.results import Run
from lab.errors import LabError


def test_the_project_log_loads_with_kept_and_dropped_entries():
    entries = tuning.load()
    assert entries and all(e.before and e.after for e in entries)
    assert {e.kept for e in entries} <= {True, False}


def test_an_entry_without_kept_is_refused(tmp_path: Path):
    bad = tmp_path / "tuning.toml"
    bad.write_text('[[entry]]\ntitle = "x"\nwhere = "y"\nmetric = "m"\nbefore = "1"\nafter = "2"\n')
    with pytest.raises(LabError, match="entry 1 needs note"):
        tuning.load(bad)


def test_report_has_the_tuning_log_and_four_budget_lines(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir()
    html = report.render(Run("run", {}, (), folder)).read_text()
    assert 'id="tuning"' in html
    assert tuning.load()[0].title in html
    assert "not measured in this run" in html  # the scale line without its opt-in cell
    assert html.count("<td>Scale: 10,000,000 rows") == 1
