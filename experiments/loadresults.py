"""Load-run results: Locust's CSV stats and the audit, summarised as versioned JSON.

``reports/<run-id>/load.json`` is written by ``lab load``; ``load_section(run_dir)`` is
what the bench report reads to show a load section when that file exists.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.config import PROJECT_ROOT
from lab.errors import LabError

SCHEMA = "ingest-lab/load"
VERSION = 1
FILENAME = "load.json"
#: The Locust stats CSV row that sums every request name.
AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class EndpointStats:
    """One row of Locust's ``*_stats.csv``: a request name, or the aggregate of all."""

    name: str
    requests: int
    failures: int
    requests_per_s: float
    avg_ms: float
    max_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class LoadSummary:
    """What a report shows about one load run."""

    run_id: str
    created_at: str  # ISO 8601, UTC
    target: str  # the URL Locust loaded, always on 127.0.0.1
    shape: str
    users: int
    run_time_s: float
    rows_per_upload: int
    strategy_mix: str
    requests: int
    failures: int
    requests_per_s: float
    rows: int  # acknowledged by 2xx responses
    rows_per_s: float  # acknowledged rows / (last acknowledgement - first request sent)
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rejected: int  # deliberately bad uploads the service refused, as it must
    audit_passed: bool
    #: Median/95th percentile of the ledger's in-database time of succeeded uploads.
    server_in_db_p50_ms: float | None
    server_in_db_p95_ms: float | None
    endpoints: tuple[EndpointStats, ...]
    #: Files in the run folder, relative to it.
    html_report: str
    stats_csv: str


# -- pure --------------------------------------------------------------------------------------


def _number(raw: str) -> float | None:
    if raw in ("", "N/A"):
        return None
    return float(raw)


def parse_stats(
    rows: Iterable[Mapping[str, str]],
) -> tuple[EndpointStats, tuple[EndpointStats, ...]]:
    """(aggregate, per request name) from the rows of Locust's ``*_stats.csv``."""
    aggregate: EndpointStats | None = None
    named: list[EndpointStats] = []
    for row in rows:
        entry = EndpointStats(
            name=row["Name"],
            requests=int(row["Request Count"]),
            failures=int(row["Failure Count"]),
            requests_per_s=float(row["Requests/s"]),
            avg_ms=float(row["Average Response Time"]),
            max_ms=float(row["Max Response Time"]),
            p50_ms=_number(row["50%"]),
            p95_ms=_number(row["95%"]),
            p99_ms=_number(row["99%"]),
        )
        if row["Name"] == AGGREGATED:
            aggregate = entry
        else:
            named.append(entry)
    if aggregate is None:
        raise LabError("Locust's stats CSV has no Aggregated row", code="bad_stats")
    return aggregate, tuple(named)


def rows_per_second(acks: Sequence[tuple[int, float, float]]) -> float:
    """Acknowledged rows per second of wall time, from (rows, started, finished) per upload:
    total rows over the span from the first request sent to the last answer read."""
    if not acks:
        return 0.0
    span = max(a[2] for a in acks) - min(a[1] for a in acks)
    total = sum(a[0] for a in acks)
    return total / span if span > 0 else 0.0


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (1..99) of ``values``; None without values."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- files -------------------------------------------------------------------------------------


def read_stats_csv(path: Path) -> tuple[EndpointStats, tuple[EndpointStats, ...]]:
    if not path.exists():
        raise LabError(f"Locust wrote no stats file {path}", code="bad_stats")
    with path.open(newline="", encoding="utf-8") as f:
        return parse_stats(csv.DictReader(f))


def machine() -> dict[str, Any]:
    """Where the numbers were measured (asv/pyperf style metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "locust": pkg("locust"),
        "psycopg": pkg("psycopg"),
        "git_commit": commit or None,
    }


def write(run_dir: Path, summary: LoadSummary, details: Mapping[str, Any]) -> Path:
    """``run_dir/load.json``: schema, version, the summary and everything behind it."""
    document = {
        "schema": SCHEMA,
        "version": VERSION,
        "summary": asdict(summary),
        "machine": machine(),
        **details,
    }
    path = run_dir / FILENAME
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def load_section(run_dir: Path) -> LoadSummary | None:
    """The load summary of a run folder, or None when no load ran there."""
    path = run_dir / FILENAME
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LabError(f"{path} is not valid JSON: {exc}", code="bad_results") from None
    if document.get("schema") != SCHEMA or document.get("version") != VERSION:
        raise LabError(
            f"{path} has schema {document.get('schema')!r} version {document.get('version')!r};"
            f" this lab reads {SCHEMA!r} version {VERSION}",
            code="bad_results",
        )
    data = dict(document["summary"])
    data["endpoints"] = tuple(EndpointStats(**e) for e in data["endpoints"])
    return LoadSummary(**data)


@dataclass(frozen=True)
class LoadReport:
    """The load results a bench report shows, and where they come from."""

    summary: LoadSummary
    folder: Path
    #: False when they come from a separate (the newest) load run next to the bench run.
    same_run: bool


def for_report(run_dir: Path) -> LoadReport | None:
    """The run folder's own load results, else the newest load run beside it, else None."""
    summary = load_section(run_dir)
    if summary is not None:
        return LoadReport(summary, run_dir, same_run=True)
    other = latest_run(run_dir.parent)
    if other is None:
        return None
    summary = load_section(other)
    return None if summary is None else LoadReport(summary, other, same_run=False)


def latest_run(reports: Path) -> Path | None:
    """The newest run folder under ``reports`` holding a load.json (by its created_at)."""
    found: list[tuple[str, Path]] = []
    for path in reports.glob(f"*/{FILENAME}"):
        if path.parent.is_symlink():  # reports/latest-load points at a real run folder
            continue
        try:
            created = str(json.loads(path.read_text(encoding="utf-8"))["summary"]["created_at"])
        except (ValueError, KeyError, TypeError, OSError):
            continue
        found.append((created, path.parent))
    return max(found)[1] if found else None
