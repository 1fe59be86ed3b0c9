"""Statistics over a run's samples, all from scipy/numpy: bootstrap CIs for the median,
percentiles, the share over budget, peer ratios, the budget checks, and run comparison
with the Mann-Whitney U test.

Only measured samples count: warm-ups and failed loads are excluded (failures are
counted separately so the report can show them).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from experiments.cpu import SERIAL_FIELD, SIDES

CELL_KEYS = ["kind", "path", "name", "rows", "variant", "concurrency"]
CONFIDENCE = 0.95
# 2,000 resamples: the CI bounds move by < 1 % between seeds at n = 9 (checked on the
# psycopg-text 100k samples); more only costs report time.
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Description:
    n: int
    median: float
    ci_low: float
    ci_high: float
    p95: float
    p99: float
    mean: float
    std: float
    over_budget: float


def describe(values: Sequence[float] | np.ndarray[Any, Any], budget_ms: float) -> Description:
    """Median with a bootstrap CI, p95/p99, mean, std and the share of values > budget."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    nan = float("nan")
    if x.size == 0:
        return Description(0, nan, nan, nan, nan, nan, nan, nan, nan)
    median = float(np.median(x))
    if x.size >= 2 and np.ptp(x) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on small, lumpy samples
            ci = sps.bootstrap(
                (x,),
                np.median,
                confidence_level=CONFIDENCE,
                n_resamples=BOOTSTRAP_RESAMPLES,
                method="percentile",
                rng=np.random.default_rng(0),
            ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    elif x.size >= 2:
        low = high = median
    else:
        low = high = nan
    p95, p99 = (float(v) for v in np.percentile(x, [95, 99]))
    return Description(
        n=int(x.size),
        median=median,
        ci_low=low,
        ci_high=high,
        p95=p95,
        p99=p99,
        mean=float(np.mean(x)),
        std=float(np.std(x, ddof=1)) if x.size >= 2 else nan,
        over_budget=float(np.mean(x > budget_ms)),
    )


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """The samples statistics use: successful and not warm-up."""
    return frame[frame["ok"] & ~frame["warmup"]]


def summary(frame: pd.DataFrame, budget_ms: float) -> pd.DataFrame:
    """One row per cell: in-DB and wall statistics, phase medians, failures."""
    rows = []
    for key, group in frame.groupby(CELL_KEYS, sort=True):
        good = measured(group)
        failed = group[~group["ok"]]
        in_db = describe(good["in_db_ms"].dropna().tolist(), budget_ms)
        wall = describe(good["wall_ms"].dropna().tolist(), budget_ms)
        row: dict[str, Any] = dict(zip(CELL_KEYS, key, strict=True))
        row.update(
            n=in_db.n if in_db.n else wall.n,
            failures=len(failed),
            error=str(failed["error"].iloc[0]) if len(failed) else "",
            in_db_median=in_db.median,
            in_db_ci_low=in_db.ci_low,
            in_db_ci_high=in_db.ci_high,
            in_db_p95=in_db.p95,
            in_db_p99=in_db.p99,
            over_budget_share=in_db.over_budget,
            wall_median=wall.median,
            wall_ci_low=wall.ci_low,
            wall_ci_high=wall.ci_high,
            wall_p95=wall.p95,
        )
        rss = good["rss_growth_mb"].dropna() if "rss_growth_mb" in good else pd.Series([])
        row["rss_growth_max"] = float(rss.max()) if len(rss) else float("nan")
        for phase in ("parse_ms", "commit_ms", "total_ms", "http_ms"):
            row[phase.replace("_ms", "_median")] = _median(good, phase)
        row.update(_cpu_medians(good))
        rows.append(row)
    return pd.DataFrame(rows)


def _median(frame: pd.DataFrame, column: str) -> float:
    if column not in frame:
        return float("nan")
    values = frame[column].dropna()
    return float(values.median()) if len(values) else float("nan")


#: The CPU columns of ``summary``: each side's median, their per-load sum, the busiest process.
CPU_MEDIANS = {
    **{field: field.replace("_ms", "_median") for field in SIDES.values()},
    SERIAL_FIELD: SERIAL_FIELD.replace("_ms", "_median"),
}


def _cpu_medians(good: pd.DataFrame) -> dict[str, float]:
    """Median CPU per side (experiments/cpu.py), and the median of each load's total over
    the sides observed in it (NaN where no load recorded CPU)."""
    row = {column: _median(good, field) for field, column in CPU_MEDIANS.items()}
    present = [f for f in SIDES.values() if f in good]
    totals = good[present].sum(axis=1, min_count=1).dropna() if present else pd.Series([])
    row["cpu_total_median"] = float(totals.median()) if len(totals) else float("nan")
    return row


@dataclass(frozen=True)
class CpuFloor:
    """The least wall time a cell's processes allow on ``cores`` cores: the CPU of all its
    sides over the cores, or the busiest single-threaded process's CPU, whichever is more.

    No scheduler can finish a load sooner than that, so a target below it is out of reach
    on this machine whatever the code does with its time (medians of the cell's loads;
    /proc counts in 10 ms ticks).
    """

    sides: dict[str, float]  # side name ("client", "proxy", ...) -> median CPU ms
    total_ms: float
    serial_ms: float | None
    cores: int

    @property
    def floor_ms(self) -> float:
        return max(self.total_ms / self.cores, self.serial_ms or 0.0)

    def describe(self) -> str:
        parts = ", ".join(f"{side} {ms:.0f}" for side, ms in self.sides.items())
        busiest = "" if self.serial_ms is None else f", busiest process {self.serial_ms:.0f} ms"
        return f"CPU {self.total_ms:.0f} ms ({parts}{busiest}) over {self.cores} cores"


def cpu_floor(cell: pd.Series | Mapping[str, Any], cores: int | None) -> CpuFloor | None:
    """The CPU floor of one ``summary`` row, or None when its CPU was not recorded."""
    total = float(cell.get("cpu_total_median", float("nan")))
    if not cores or math.isnan(total):
        return None
    sides = {
        side: float(cell[CPU_MEDIANS[field]])
        for side, field in SIDES.items()
        if not math.isnan(float(cell.get(CPU_MEDIANS[field], float("nan"))))
    }
    serial = float(cell.get(CPU_MEDIANS[SERIAL_FIELD], float("nan")))
    return CpuFloor(sides, total, None if math.isnan(serial) else serial, int(cores))


def peer_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Each strategy's median over each peer's median on the same file and table.

    ``in_db_ratio``: in-DB time (server clock, same definition on both sides);
    ``wall_ratio``: client wall time of the whole operation (for the HTTP path: the upload
    request, against the peer's whole run). Below 1: our strategy is faster.
    """
    peers = table[(table["kind"] == "peer") & (table["concurrency"] == 1)]
    ours = table[(table["kind"] == "strategy") & (table["concurrency"] == 1)]
    rows = []
    for _, peer in peers.iterrows():
        same = ours[(ours["rows"] == peer["rows"]) & (ours["variant"] == peer["variant"])]
        for _, mine in same.iterrows():
            if pd.isna(mine["in_db_median"]) and pd.isna(mine["wall_median"]):
                continue  # the cell failed: the failures table shows it
            rows.append(
                {
                    "strategy": mine["name"],
                    "path": mine["path"],
                    "rows": int(peer["rows"]),
                    "variant": peer["variant"],
                    "peer": peer["name"],
                    "in_db_ratio": mine["in_db_median"] / peer["in_db_median"],
                    "wall_ratio": mine["wall_median"] / peer["wall_median"],
                }
            )
    return pd.DataFrame(
        rows, columns=["strategy", "path", "rows", "variant", "peer", "in_db_ratio", "wall_ratio"]
    )


@dataclass(frozen=True)
class BudgetCheck:
    """One line of the report's budget section: what was measured against which target."""

    title: str
    measured: str
    target: str
    passed: bool | None  # None: could not be measured in this run
    detail: str


def _best(cells: pd.DataFrame, column: str) -> pd.Series | None:
    cells = cells[cells[column].notna()]
    if cells.empty:
        return None
    return cells.sort_values(column, kind="stable").iloc[0]


@dataclass(frozen=True)
class Targets:
    """The targets besides the in-DB budget (issue 8; ``[settings]`` of matrix.toml)."""

    #: best strategy's in-DB median / psql \copy's, same file, same run
    psql_ratio: float = 0.20
    #: HTTP upload wall median / psql \copy's wall median
    http_ratio: float = 0.80
    #: rows of the scale cell (HTTP), and how far its throughput may fall below the
    #: reference HTTP throughput
    scale_rows: int = 10_000_000
    scale_throughput_drop: float = 0.20
    #: worker RSS growth allowed over the scale upload (MB)
    scale_rss_mb: float = 100.0

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Targets:
        raw = raw or {}
        return cls(
            psql_ratio=float(raw.get("psql_ratio", cls.psql_ratio)),
            http_ratio=float(raw.get("http_ratio", cls.http_ratio)),
            scale_rows=int(raw.get("scale_rows", cls.scale_rows)),
            scale_throughput_drop=float(
                raw.get("scale_throughput_drop", cls.scale_throughput_drop)
            ),
            scale_rss_mb=float(raw.get("scale_rss_mb", cls.scale_rss_mb)),
        )


def budget_checks(
    table: pd.DataFrame,
    budget_ms: float,
    reference_rows: int,
    targets: Targets | None = None,
    cores: int | None = None,
) -> list[BudgetCheck]:
    """The four budget lines; the first (best in-DB median vs. budget) is the gate.
    ``cores`` (the machine's) turns the HTTP line's recorded CPU into its floor."""
    targets = targets or Targets()
    if table.empty:
        table = pd.DataFrame(columns=[*CELL_KEYS, "in_db_median", "wall_median"])
    ref = table[
        (table["rows"] == reference_rows)
        & (table["variant"] == "logged")
        & (table["concurrency"] == 1)
    ]
    inproc = ref[(ref["path"] == "inproc")]
    http = ref[(ref["path"] == "http")]
    psql = ref[(ref["kind"] == "peer") & (ref["name"] == "psql-copy")]
    rows = f"{reference_rows:,} rows, logged table"
    checks = []

    best = _best(inproc, "in_db_median")
    if best is None:
        checks.append(
            BudgetCheck(
                f"In-DB time, best strategy ({rows})",
                "not measured",
                f"<= {budget_ms:g} ms",
                None,
                "no successful in-process sample",
            )
        )
    else:
        value = float(best["in_db_median"])
        checks.append(
            BudgetCheck(
                f"In-DB time, best strategy ({rows})",
                f"{value:.1f} ms ({best['name']}, median of {int(best['n'])})",
                f"<= {budget_ms:g} ms",
                value <= budget_ms,
                "the gate (--gate) checks this line",
            )
        )
    psql_in_db = _best(psql, "in_db_median")
    if best is None or psql_in_db is None:
        checks.append(
            BudgetCheck(
                "Best strategy / psql \\copy, in-DB",
                "not measured",
                f"<= {targets.psql_ratio:.2f}x",
                None,
                "needs both the best strategy and psql-copy at the reference cell",
            )
        )
    else:
        ratio = float(best["in_db_median"]) / float(psql_in_db["in_db_median"])
        checks.append(
            BudgetCheck(
                "Best strategy / psql \\copy, in-DB",
                f"{ratio:.2f}x ({best['name']} {float(best['in_db_median']):.1f} ms vs "
                f"{float(psql_in_db['in_db_median']):.1f} ms)",
                f"<= {targets.psql_ratio:.2f}x",
                ratio <= targets.psql_ratio,
                "server clock on both sides",
            )
        )
    best_http = _best(http, "wall_median")
    psql_wall = _best(psql, "wall_median")
    if best_http is None or psql_wall is None:
        checks.append(
            BudgetCheck(
                "End-to-end HTTP upload vs psql \\copy, wall",
                "not measured",
                f"<= {targets.http_ratio:.2f}x",
                None,
                "needs the HTTP path and psql-copy at the reference cell",
            )
        )
    else:
        psql_ms = float(psql_wall["wall_median"])
        ratio = float(best_http["wall_median"]) / psql_ms
        detail = "client clock: upload request vs the whole psql run"
        floor = cpu_floor(best_http, cores)
        if floor is not None:
            detail += (
                f". {best_http['name']}: {floor.describe()}: floor {floor.floor_ms:.0f} ms = "
                f"{floor.floor_ms / psql_ms:.2f}x psql's wall"
            )
            psql_floor = cpu_floor(psql_wall, cores)
            if psql_floor is not None:
                detail += f"; psql \\copy used {psql_floor.total_ms:.0f} ms of CPU"
        checks.append(
            BudgetCheck(
                "End-to-end HTTP upload vs psql \\copy, wall",
                f"{ratio:.2f}x ({best_http['name']} {float(best_http['wall_median']):.1f} ms vs "
                f"{psql_ms:.1f} ms)",
                f"<= {targets.http_ratio:.2f}x",
                ratio <= targets.http_ratio,
                detail,
            )
        )
    checks.append(_scale_check(table, best_http, targets))
    return checks


def _scale_check(table: pd.DataFrame, best_http: pd.Series | None, targets: Targets) -> BudgetCheck:
    """HTTP throughput at the scale size against the reference HTTP throughput."""
    title = f"Scale: {targets.scale_rows:,} rows over HTTP, throughput and worker RSS"
    target = (
        f">= {1 - targets.scale_throughput_drop:.2f}x the reference throughput, "
        f"RSS growth <= {targets.scale_rss_mb:g} MB"
    )
    big = table[
        (table["rows"] == targets.scale_rows)
        & (table["path"] == "http")
        & (table["variant"] == "logged")
        & (table["concurrency"] == 1)
    ]
    scale = _best(big, "wall_median")
    if scale is None or best_http is None:
        return BudgetCheck(
            title,
            "not measured in this run",
            target,
            None,
            "opt-in (not part of the default run): lab bench --matrix scale",
        )
    name = scale["name"]
    ref = table[
        (table["rows"] == best_http["rows"])
        & (table["path"] == "http")
        & (table["variant"] == "logged")
        & (table["concurrency"] == 1)
        & (table["name"] == name)
    ]
    if ref.empty:
        return BudgetCheck(title, "not measured in this run", target, None, f"no {name} reference")
    ref_rate = float(ref.iloc[0]["rows"]) / float(ref.iloc[0]["wall_median"]) * 1000
    rate = float(scale["rows"]) / float(scale["wall_median"]) * 1000
    share = rate / ref_rate
    rss = float(scale.get("rss_growth_max", float("nan")))
    fast = share >= 1 - targets.scale_throughput_drop
    lean = None if math.isnan(rss) else rss <= targets.scale_rss_mb
    return BudgetCheck(
        title,
        f"{share:.2f}x ({name}: {rate:,.0f} rows/s vs {ref_rate:,.0f} rows/s at "
        f"{int(ref.iloc[0]['rows']):,} rows, median of {int(scale['n'])}); worker RSS growth "
        + ("not recorded" if math.isnan(rss) else f"{rss:.1f} MB"),
        target,
        False if not fast or lean is False else lean,
        "client wall clock; RSS: the serving gunicorn worker's peak (VmHWM) over the upload "
        "minus its RSS before",
    )


def compare(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    metric: str = "in_db_ms",
    threshold: float = 1.10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per cell present in both runs: median ratio B/A and a two-sided Mann-Whitney U test.

    ``regression`` is True when B is slower by more than ``threshold`` and the difference
    is significant at ``alpha``.
    """
    a, b = measured(a), measured(b)
    rows = []
    b_groups = {k: g for k, g in b.groupby(CELL_KEYS, sort=True)}
    for key, group_a in a.groupby(CELL_KEYS, sort=True):
        group_b = b_groups.get(key)
        if group_b is None:
            continue
        xa = group_a[metric].dropna().to_numpy(dtype=float)
        xb = group_b[metric].dropna().to_numpy(dtype=float)
        if len(xa) == 0 or len(xb) == 0:
            continue
        ratio = float(np.median(xb) / np.median(xa))
        p_value = float(sps.mannwhitneyu(xb, xa, alternative="two-sided").pvalue)
        significant = p_value < alpha
        row: dict[str, Any] = dict(zip(CELL_KEYS, key, strict=True))
        row.update(
            n_a=len(xa),
            n_b=len(xb),
            median_a=float(np.median(xa)),
            median_b=float(np.median(xb)),
            ratio=ratio,
            p_value=p_value,
            significant=significant,
            regression=significant and ratio > threshold,
        )
        rows.append(row)
    columns = [
        *CELL_KEYS,
        "n_a",
        "n_b",
        "median_a",
        "median_b",
        "ratio",
        "p_value",
        "significant",
        "regression",
    ]
    return pd.DataFrame(rows, columns=columns)
