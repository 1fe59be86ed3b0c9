"""The matrix file: expansion, registry-driven names, CLI selection, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import matrix
from lab.errors import LabError

STRATEGIES = ["psycopg-text", "psycopg-binary", "arrow-adbc"]
PEERS = ["psql-copy", "pandas-to-sql", "adbc-ingest"]


def test_default_matrix_covers_the_reference_cell_with_enough_repetitions() -> None:
    m = matrix.load("default")
    cells = matrix.expand(m, STRATEGIES, PEERS)
    ref = [
        c
        for c in cells
        if c.path == "inproc" and c.rows == m.settings.reference_rows and c.variant == "logged"
    ]
    assert {c.name for c in ref} == set(STRATEGIES)  # "*" follows the registry
    assert all(c.reps >= 9 for c in ref)
    assert {c.variant for c in cells if c.rows == 100_000 and c.path == "inproc"} == {
        "logged",
        "unlogged",
        "pk",
    }
    assert {c.path for c in cells} == {"inproc", "http", "peer"}
    assert {c.name for c in cells if c.path == "peer" and c.rows == 100_000} == set(PEERS)
    assert 1_000_000 not in {c.rows for c in cells}
    full = matrix.expand(matrix.load("full"), STRATEGIES, PEERS)
    assert 1_000_000 in {c.rows for c in full}


def test_selection_narrows_to_one_cell_and_overrides_reps() -> None:
    cells = matrix.expand(matrix.load("default"), STRATEGIES, PEERS)
    chosen = matrix.select(
        cells,
        matrix.Selection(
            strategies=("arrow-adbc",), rows=(100_000,), variants=("pk",), paths=("inproc",), reps=2
        ),
    )
    assert [(c.name, c.rows, c.variant, c.path, c.reps) for c in chosen] == [
        ("arrow-adbc", 100_000, "pk", "inproc", 2)
    ]
    no_peers = matrix.select(cells, matrix.Selection(no_peers=True))
    assert all(c.kind == "strategy" for c in no_peers)
    with pytest.raises(LabError, match="no cell of the matrix matches"):
        matrix.select(cells, matrix.Selection(rows=(7,)))
    assert matrix.planned_loads(chosen) == 2 + chosen[0].warmup


def test_invalid_matrices_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text(
        '[x]\n[[x.cells]]\npath = "inproc"\nrows = [10]\nvariants = ["pk"]\nconcurrency = [2]\n'
    )
    with pytest.raises(LabError, match="collide"):
        matrix.expand(matrix.load("x", bad), STRATEGIES, PEERS)
    bad.write_text('[x]\n[[x.cells]]\npath = "carrier-pigeon"\nrows = [10]\n')
    with pytest.raises(LabError, match="path must be one of"):
        matrix.expand(matrix.load("x", bad), STRATEGIES, PEERS)
    with pytest.raises(LabError, match="not found"):
        matrix.load("nope", bad)


def test_dry_run_lists_cells(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["bench", "--dry-run", "--path", "peer", "--rows", "100000"]) == 0
    out = capsys.readouterr().out
    assert "psql-copy peer 100,000 logged" in out and "cells" in out
    assert "interleaved (reference)" in out  # the run order shows the group


def test_interleave_groups_run_as_one_batch_at_their_first_cells_place() -> None:
    m = matrix.load("default")
    cells = matrix.expand(m, STRATEGIES, PEERS)
    batches = matrix.batches(cells)
    assert sorted(c.key for b in batches for c in b) == sorted(c.key for c in cells)
    (reference,) = [b for b in batches if len(b) > 1]
    # The budget's comparisons: every strategy in-process and over HTTP, and psql, at the
    # reference size, in one group.
    assert {c.interleave for c in reference} == {"reference"}
    assert {(c.path, c.rows) for c in reference} == {
        ("inproc", 100_000),
        ("http", 100_000),
        ("peer", 100_000),
    }
    assert {c.name for c in reference if c.path == "http"} == set(STRATEGIES)
    assert "psql-copy" in {c.name for c in reference}
    # The group takes the place of its first cell: after the small in-process cells,
    # before the unlogged and pk ones.
    order = [b[0].rows if len(b) == 1 else "group" for b in batches if b[0].path == "inproc"]
    assert order.index("group") > order.index(10_000)
    firsts = [b[0] for b in batches]
    group_at = firsts.index(reference[0])
    assert all(c.variant == "logged" for c in firsts[:group_at] if c.path == "inproc")


def test_interleave_must_be_a_group_name(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text('[m]\n[[m.cells]]\npath = "inproc"\nrows = [10]\ninterleave = 1\n')
    with pytest.raises(LabError, match="interleave must be a group name"):
        matrix.expand(matrix.load("m", bad), STRATEGIES, PEERS)
