"""The matrix file (``matrix.toml``) read and expanded into cells, then narrowed by the CLI.

Pure logic: no database, no clock. The runner passes in which strategies and peers
exist, so ``names = "*"`` follows the registry at run time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any

from experiments.measure import PATHS, VARIANTS
from lab.errors import LabError

MATRIX_FILE = Path(__file__).with_name("matrix.toml")


@dataclass(frozen=True)
class Cell:
    """One combination to measure ``reps`` times after ``warmup`` unmeasured runs."""

    path: str
    name: str
    rows: int
    variant: str
    concurrency: int
    reps: int
    warmup: int
    #: Cells sharing a non-empty group run interleaved, one repetition of each per round
    #: (``batches``), so a noisy moment of a shared machine hits them alike.
    interleave: str = ""

    @property
    def kind(self) -> str:
        return "peer" if self.path == "peer" else "strategy"

    @property
    def table(self) -> str:
        return VARIANTS[self.variant]

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        return (self.path, self.name, self.rows, self.variant, self.concurrency)

    def label(self) -> str:
        extra = f" x{self.concurrency}" if self.concurrency > 1 else ""
        return f"{self.name} {self.path} {self.rows:,} {self.variant}{extra}"


#: Table kinds of the server floor (``experiments/floor.py``).
FLOOR_KINDS = ("durable", "unlogged")


@dataclass(frozen=True)
class FloorSettings:
    """``[settings.floor]``: the server-floor measurement run after the cells.

    Absent from a matrix file means off (a file declares what it runs); ``rows`` 0 means
    the reference size.
    """

    enabled: bool = False
    rows: int = 0
    connections: tuple[int, ...] = (1, 2)
    kinds: tuple[str, ...] = FLOOR_KINDS
    reps: int = 7
    warmup: int = 1
    profile: bool = True
    profile_loads: int = 10

    def loads(self) -> int:
        """Loads the floor runs (progress total): every (N, kind) per repetition + profile."""
        per_round = len(self.connections) * len(self.kinds)
        return per_round * (self.reps + self.warmup) + (self.profile_loads if self.profile else 0)


def floor_settings(raw: Any, where: str = "[settings.floor]") -> FloorSettings:
    """Read and check ``[settings.floor]`` (None = not declared = off)."""
    if raw is None:
        return FloorSettings()
    if not isinstance(raw, dict):
        raise LabError(f"{where} must be a table", code="bad_matrix")
    known = {f for f in FloorSettings.__dataclass_fields__}
    if unknown := sorted(set(raw) - known):
        raise LabError(
            f"{where}: unknown key {unknown[0]!r}; use {', '.join(sorted(known))}",
            code="bad_matrix",
        )
    default = FloorSettings()
    floor = FloorSettings(
        enabled=bool(raw.get("enabled", True)),
        rows=int(raw.get("rows", default.rows)),
        connections=tuple(int(n) for n in _as_list(raw.get("connections"), [1, 2])),
        kinds=tuple(str(k) for k in _as_list(raw.get("kinds"), list(FLOOR_KINDS))),
        reps=int(raw.get("reps", default.reps)),
        warmup=int(raw.get("warmup", default.warmup)),
        profile=bool(raw.get("profile", default.profile)),
        profile_loads=int(raw.get("profile_loads", default.profile_loads)),
    )
    if bad := [k for k in floor.kinds if k not in FLOOR_KINDS]:
        raise LabError(
            f"{where}: unknown kind {bad[0]!r}; use {', '.join(FLOOR_KINDS)}", code="bad_matrix"
        )
    if (
        not floor.connections
        or not floor.kinds
        or any(n < 1 for n in floor.connections)
        or floor.rows < 0
        or floor.reps < 1
        or floor.warmup < 0
        or floor.profile_loads < 1
    ):
        raise LabError(
            f"{where}: connections and kinds non-empty, connections >= 1, rows >= 0, "
            "reps >= 1, warmup >= 0, profile_loads >= 1",
            code="bad_matrix",
        )
    return floor


@dataclass(frozen=True)
class Settings:
    seed: int = 42
    warmup: int = 1
    budget_ms: float = 50.0
    reference_rows: int = 100_000
    #: The other targets of the budget section (``[settings.targets]``), as declared.
    targets: dict[str, Any] = field(default_factory=dict)
    floor: FloorSettings = FloorSettings()


@dataclass(frozen=True)
class Matrix:
    name: str
    description: str
    settings: Settings
    blocks: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Selection:
    """Command-line filters; an empty tuple means "no filter on this field"."""

    strategies: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    variants: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    concurrency: tuple[int, ...] = ()
    no_peers: bool = False
    reps: int | None = None
    warmup: int | None = None


def load(name: str = "default", file: Path | None = None) -> Matrix:
    """Read matrix ``name`` (e.g. ``default`` or ``full``) from the TOML file."""
    file = file or MATRIX_FILE
    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"cannot read matrix file {file}: {exc}", code="bad_matrix") from None
    raw = data.get("settings", {})
    settings = Settings(
        seed=int(raw.get("seed", Settings.seed)),
        warmup=int(raw.get("warmup", Settings.warmup)),
        budget_ms=float(raw.get("budget_ms", Settings.budget_ms)),
        reference_rows=int(raw.get("reference_rows", Settings.reference_rows)),
        targets=dict(raw.get("targets", {})),
        floor=floor_settings(raw.get("floor")),
    )
    section = data.get(name)
    if not isinstance(section, dict) or not section.get("cells"):
        found = [k for k, v in data.items() if isinstance(v, dict) and "cells" in v]
        raise LabError(
            f"matrix {name!r} not found in {file.name}; available: {', '.join(found)}",
            code="bad_matrix",
        )
    return Matrix(name, str(section.get("description", "")), settings, tuple(section["cells"]))


def _as_list(value: Any, default: list[Any]) -> list[Any]:
    if value is None:
        return default
    return list(value) if isinstance(value, list) else [value]


def expand(matrix: Matrix, strategy_names: Sequence[str], peer_names: Sequence[str]) -> list[Cell]:
    """Every cell of the matrix, in file order, without duplicates (first block wins)."""
    cells: dict[tuple[str, str, int, str, int], Cell] = {}
    for index, block in enumerate(matrix.blocks, 1):
        where = f"{matrix.name} block {index}"
        path = block.get("path")
        if path not in PATHS:
            raise LabError(f"{where}: path must be one of {PATHS}", code="bad_matrix")
        universe = peer_names if path == "peer" else strategy_names
        names = block.get("names", "*")
        chosen = list(universe) if names == "*" else _as_list(names, [])
        rows = [int(r) for r in _as_list(block.get("rows"), [])]
        variants = _as_list(block.get("variants"), ["logged"])
        concurrency = [int(c) for c in _as_list(block.get("concurrency"), [1])]
        reps = int(block.get("reps", 5))
        warmup = int(block.get("warmup", matrix.settings.warmup))
        interleave = block.get("interleave", "")
        if not isinstance(interleave, str):
            raise LabError(f"{where}: interleave must be a group name", code="bad_matrix")
        if not rows or any(r < 1 for r in rows):
            raise LabError(f"{where}: rows must list positive row counts", code="bad_matrix")
        if bad := [v for v in variants if v not in VARIANTS]:
            raise LabError(
                f"{where}: unknown variant {bad[0]!r}; use {', '.join(VARIANTS)}",
                code="bad_matrix",
            )
        if reps < 1 or warmup < 0 or any(c < 1 for c in concurrency):
            raise LabError(f"{where}: reps >= 1, warmup >= 0, concurrency >= 1", code="bad_matrix")
        if "pk" in variants and max(concurrency) > 1:
            raise LabError(
                f"{where}: concurrent loads of one file into the pk variant collide on the key",
                code="bad_matrix",
            )
        for name, n, variant, conc in product(chosen, rows, variants, concurrency):
            cell = Cell(str(path), str(name), n, str(variant), conc, reps, warmup, interleave)
            cells.setdefault(cell.key, cell)
    return list(cells.values())


def _keep(value: Any, allowed: Iterable[Any]) -> bool:
    allowed = tuple(allowed)
    return not allowed or value in allowed


def select(cells: Sequence[Cell], sel: Selection) -> list[Cell]:
    """The cells the command line asks for; an empty result is a user error."""
    chosen = []
    for cell in cells:
        names = sel.peers if cell.kind == "peer" else sel.strategies
        if cell.kind == "peer" and sel.no_peers:
            continue
        if not (
            _keep(cell.name, names)
            and _keep(cell.rows, sel.rows)
            and _keep(cell.variant, sel.variants)
            and _keep(cell.path, sel.paths)
            and _keep(cell.concurrency, sel.concurrency)
        ):
            continue
        if sel.reps is not None:
            cell = replace(cell, reps=sel.reps)
        if sel.warmup is not None:
            cell = replace(cell, warmup=sel.warmup)
        chosen.append(cell)
    if not chosen:
        raise LabError(
            "no cell of the matrix matches the filters; the matrix has "
            f"rows {sorted({c.rows for c in cells})}, "
            f"variants {sorted({c.variant for c in cells})}, "
            f"paths {sorted({c.path for c in cells})}, names {sorted({c.name for c in cells})}",
            code="bad_selection",
        )
    return chosen


def batches(cells: Sequence[Cell]) -> list[list[Cell]]:
    """The cells in run order: each alone, except that the cells of one ``interleave`` group
    form one batch, at the place of the group's first cell."""
    out: list[list[Cell]] = []
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if not cell.interleave:
            out.append([cell])
        elif cell.interleave in groups:
            groups[cell.interleave].append(cell)
        else:
            groups[cell.interleave] = [cell]
            out.append(groups[cell.interleave])
    return out


def planned_loads(cells: Iterable[Cell]) -> int:
    """How many loads the cells will run, warm-ups included (the progress bar's total)."""
    return sum((c.reps + c.warmup) * c.concurrency for c in cells)
