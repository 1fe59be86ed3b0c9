"""A run's results on disk: ``results.json`` (schema-versioned, raw samples + metadata) and
``results.csv`` (the same samples, tidy), in ``reports/<run-id>/``; ``reports/latest`` points
at the newest run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is the bench extra; `lab db …` must work without it
    import pandas as pd

from experiments.floor import FloorResult
from experiments.measure import COLUMNS, CPU_FIELDS, TIMING_FIELDS, Sample
from lab.config import PROJECT_ROOT
from lab.errors import LabError

#: 2 added ``floor`` (the server floor, ``experiments/floor.py``; null when not measured).
#: 3 added the samples' ``cpu_*_ms`` (``experiments/cpu.py``; absent: not observed).
SCHEMA_VERSION = 3
#: Versions this lab still reads: a version-1 file is a run without a floor, a version-2
#: one a run without CPU figures.
READABLE_VERSIONS = (1, 2, 3)
DEFAULT_REPORTS = PROJECT_ROOT / "reports"
#: Server settings recorded with every run: the ingest-tuned ones plus what else moves loads.
PG_SETTINGS = (
    "shared_buffers",
    "wal_level",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "maintenance_work_mem",
    "work_mem",
    "jit",
    "max_connections",
    "wal_compression",
)
DRIVERS = (
    "psycopg",
    "psycopg-binary",
    "asyncpg",
    "pyarrow",
    "adbc-driver-postgresql",
    "pandas",
    "numpy",
    "sqlalchemy",
    "scipy",
    "matplotlib",
    "flask",
    "gunicorn",
    "requests",
)


@dataclass(frozen=True)
class Run:
    run_id: str
    metadata: dict[str, Any]
    samples: tuple[Sample, ...]
    folder: Path
    #: The server floor measured with the run, or None (not declared, or an older file).
    floor: FloorResult | None = None

    def frame(self) -> pd.DataFrame:
        return to_frame(self.samples)


def to_frame(samples: Iterable[Sample]) -> pd.DataFrame:
    """The tidy DataFrame: one row per sample, columns as documented (``COLUMNS``)."""
    import pandas as pd

    frame = pd.DataFrame([s.to_dict() for s in samples], columns=list(COLUMNS))
    for name in (*TIMING_FIELDS, "rss_growth_mb", *CPU_FIELDS):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in ("rows_loaded", "bytes"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
    frame["warmup"] = frame["warmup"].astype(bool)
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def git_sha(root: Path = PROJECT_ROOT) -> tuple[str, bool]:
    """(commit sha or "unknown", whether the work tree has uncommitted changes)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return sha, bool(dirty)


def new_run_id(now: datetime | None = None, sha: str | None = None) -> str:
    now = now or datetime.now(UTC)
    sha = sha if sha is not None else git_sha()[0]
    short = sha[:8] if sha != "unknown" else "nogit"
    return f"{now:%Y%m%dT%H%M%SZ}-{short}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def machine_metadata() -> dict[str, Any]:
    """Host, CPU, memory, OS, Python and driver versions: what makes numbers comparable."""
    import psutil

    sha, dirty = git_sha()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "drivers": {d: v for d in DRIVERS if (v := _version(d)) is not None},
    }


def server_metadata(url: str) -> dict[str, Any]:
    """PostgreSQL version and the settings that matter for loads, read from the server."""
    from lab.database import connect

    with connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = {}
        for name in PG_SETTINGS:
            row = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()
            settings[name] = None if row is None else row[0]
    return {"server_version": None if version is None else version[0], "settings": settings}


def _clean(value: Any) -> Any:
    """NaN -> None so the JSON is standard (json.dumps would write bare NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def save(
    folder: Path,
    run_id: str,
    metadata: Mapping[str, Any],
    samples: Sequence[Sample],
    floor: FloorResult | None = None,
) -> Run:
    """Write results.json and results.csv into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "metadata": dict(metadata),
        "samples": [s.to_dict() for s in samples],
        "floor": None if floor is None else floor.to_dict(),
    }
    tmp = folder / "results.json.tmp"
    tmp.write_text(json.dumps(_clean(document), indent=1, sort_keys=False) + "\n")
    tmp.replace(folder / "results.json")
    to_frame(samples).to_csv(folder / "results.csv", index=False)
    return Run(run_id, dict(metadata), tuple(samples), folder, floor)


def point_latest(reports: Path, folder: Path) -> Path:
    """Make ``reports/latest`` a relative symlink to ``folder`` (a text file if symlinks fail)."""
    latest = reports / "latest"
    tmp = reports / ".latest.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(folder.name, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            raise OSError("reports/latest is a real folder")
        tmp.replace(latest)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if latest.is_symlink():
            latest.unlink()
        if not latest.is_dir():
            latest.write_text(folder.name + "\n")
    return latest


def resolve(run: str | None, reports: Path = DEFAULT_REPORTS) -> Path:
    """A run folder from a run id, a folder path, or "latest" (the default)."""
    name = run or "latest"
    candidate = Path(name)
    if (candidate / "results.json").exists():
        return candidate.resolve()
    folder = reports / name
    if name == "latest" and folder.is_file():
        folder = reports / folder.read_text().strip()
    if (folder / "results.json").exists():
        return folder.resolve()
    raise LabError(
        f"no run {name!r} under {reports} (expected {folder}/results.json)", code="no_run"
    )


def load(folder: Path) -> Run:
    try:
        document = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {folder}/results.json: {exc}", code="bad_results") from None
    version = document.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise LabError(
            f"{folder}/results.json has schema_version {version!r}; this lab reads "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)}",
            code="bad_results",
        )
    samples = tuple(Sample.from_dict(s) for s in document["samples"])
    raw_floor = document.get("floor")
    floor = None if raw_floor is None else FloorResult.from_dict(raw_floor)
    return Run(str(document["run_id"]), dict(document["metadata"]), samples, folder, floor)
