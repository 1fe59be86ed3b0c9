"""``lab strategies list|bench`` end to end, on the test database."""

from __future__ import annotations

import pytest

import strategies
from lab.cli import main


def test_list_names_every_strategy(capsys):
    assert main(["strategies", "list"]) == 0
    out = capsys.readouterr().out
    for name in strategies.names():
        assert name in out


def test_bench_prints_medians_for_chosen_strategies(db_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    argv = ["strategies", "bench", "--rows", "300", "--runs", "2", "--warmup", "0"]
    argv += ["--strategy", "psycopg-text", "--strategy", "arrow-adbc"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    assert set(lines) == {"psycopg-text", "arrow-adbc"}
    for values in lines.values():
        assert all(float(v) >= 0 for v in values)


def test_bench_refuses_unknown_strategy(db_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["strategies", "bench", "--strategy", "nope"]) == 1
    assert "valid strategies" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["strategies", "bench", "--rows", "0"], ["strategies"]])
def test_bad_arguments_exit_with_usage(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
