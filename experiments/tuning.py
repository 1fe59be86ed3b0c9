"""The tuning log (``experiments/tuning.toml``): what was tried for speed, measured before
and after, and whether it was kept. Declared as data; every report shows it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

TUNING_FILE = Path(__file__).with_name("tuning.toml")
FIELDS = ("title", "where", "metric", "before", "after", "note")


@dataclass(frozen=True)
class Entry:
    title: str
    where: str
    metric: str
    before: str
    after: str
    kept: bool
    note: str


def load(file: Path | None = None) -> list[Entry]:
    """The log's entries in file order; a malformed file is a LabError naming the entry."""
    path = file or TUNING_FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"cannot read tuning log {path}: {exc}", code="bad_tuning") from None
    entries = []
    for i, raw in enumerate(data.get("entry", []), start=1):
        missing = [f for f in (*FIELDS, "kept") if f not in raw]
        if missing or not isinstance(raw.get("kept"), bool):
            raise LabError(
                f"tuning log entry {i} needs {', '.join(missing) or 'kept = true|false'}",
                code="bad_tuning",
            )
        entries.append(Entry(kept=raw["kept"], **{f: str(raw[f]) for f in FIELDS}))
    return entries
