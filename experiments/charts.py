"""The report's charts as PNG bytes (matplotlib ``Figure`` + Agg: no pyplot state, no display).

Each function takes the tidy frame or the summary table and returns PNG bytes, or None
when the run has no data for that chart (the report says so instead of a blank image).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import pandas as pd
from matplotlib.figure import Figure

from experiments.stats import measured

SIZE = (7.5, 4.6)
DPI = 100
BUDGET_COLOR = "#d62728"
PHASES = (
    ("parse_median", "parse/encode (client)", "#9467bd"),
    ("in_db_median", "in-DB (server clock)", "#1f77b4"),
    ("commit_median", "commit", "#2ca02c"),
    ("other_median", "other client (connect, header)", "#bcbd22"),
    ("http_median", "HTTP, multipart, proxy", "#ff7f0e"),
)


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def in_db_latency(frame: pd.DataFrame, budget_ms: float, rows: int) -> bytes | None:
    """Box plot of every measured in-DB time per strategy (and peer) at ``rows``, log scale."""
    data = measured(frame)
    data = data[
        (data["rows"] == rows)
        & (data["variant"] == "logged")
        & (data["concurrency"] == 1)
        & (data["path"].isin(["inproc", "peer"]))
        & data["in_db_ms"].notna()
    ]
    if data.empty:
        return None
    order = (
        data.groupby(["kind", "name"])["in_db_ms"]
        .median()
        .reset_index()
        .sort_values(["kind", "in_db_ms"], ascending=[False, True])
    )
    labels = [
        n if k == "strategy" else f"{n} (peer)"
        for k, n in zip(order["kind"], order["name"], strict=True)
    ]
    values = [data[data["name"] == n]["in_db_ms"].to_numpy() for n in order["name"]]
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    box = ax.boxplot(values, orientation="horizontal", patch_artist=True, showfliers=True)
    ax.set_yticks(range(1, len(labels) + 1), labels)
    for patch, kind in zip(box["boxes"], order["kind"], strict=True):
        patch.set_facecolor("#1f77b4" if kind == "strategy" else "#bbbbbb")
    ax.axvline(budget_ms, color=BUDGET_COLOR, linestyle="--", label=f"budget {budget_ms:g} ms")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("in-DB time, ms (log scale)")
    ax.set_title(f"In-DB time at {rows:,} rows, logged table (in-process; peers grey)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    return _png(fig)


def phases(table: pd.DataFrame, rows: int) -> bytes | None:
    """Stacked median phases per strategy and path at ``rows``: where the time goes."""
    cells = table[
        (table["kind"] == "strategy")
        & (table["rows"] == rows)
        & (table["variant"] == "logged")
        & (table["concurrency"] == 1)
        & table["in_db_median"].notna()
    ].copy()
    if cells.empty:
        return None
    cells = cells.fillna({"parse_median": 0.0, "commit_median": 0.0, "http_median": 0.0})
    cells["other_median"] = (
        (
            cells["total_median"]
            - cells["parse_median"]
            - cells["in_db_median"]
            - cells["commit_median"]
        )
        .clip(lower=0)
        .fillna(0.0)
    )
    cells["http_median"] = cells["http_median"].clip(lower=0)
    cells = cells.sort_values(["name", "path"])
    labels = [f"{n} ({p})" for n, p in zip(cells["name"], cells["path"], strict=True)]
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    left = pd.Series(0.0, index=cells.index)
    for column, label, color in PHASES:
        ax.barh(labels, cells[column], left=left, color=color, label=label)
        left = left + cells[column]
    ax.invert_yaxis()
    ax.set_xlabel("median ms")
    ax.set_title(f"Phase breakdown at {rows:,} rows, logged table")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.45, -0.14), ncol=2)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def scaling(table: pd.DataFrame, budget_ms: float) -> bytes | None:
    """Rows vs. median in-DB time (log-log) per strategy in-process; peers dashed."""
    cells = table[
        (table["path"].isin(["inproc", "peer"]))
        & (table["variant"] == "logged")
        & (table["concurrency"] == 1)
        & table["in_db_median"].notna()
    ]
    if cells.empty or cells["rows"].nunique() < 1:
        return None
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    for (kind, name), group in cells.groupby(["kind", "name"], sort=True):
        group = group.sort_values("rows")
        low = (group["in_db_median"] - group["in_db_ci_low"]).clip(lower=0).fillna(0)
        high = (group["in_db_ci_high"] - group["in_db_median"]).clip(lower=0).fillna(0)
        ax.errorbar(
            group["rows"],
            group["in_db_median"],
            yerr=[low, high],
            marker="o",
            capsize=3,
            linestyle="-" if kind == "strategy" else ":",
            label=name if kind == "strategy" else f"{name} (peer)",
        )
    ax.axhline(budget_ms, color=BUDGET_COLOR, linestyle="--", label=f"budget {budget_ms:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows (log)")
    ax.set_ylabel("median in-DB ms (log), 95% CI")
    ax.set_title("Scaling: rows vs. in-DB time (logged table)")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(which="both", alpha=0.3)
    return _png(fig)


def peer_ratios(ratios: pd.DataFrame, rows: int) -> bytes | None:
    """Each strategy's in-DB median as a multiple of each peer's at ``rows`` (log scale)."""
    data = ratios[
        (ratios["rows"] == rows)
        & (ratios["variant"] == "logged")
        & (ratios["path"] == "inproc")
        & ratios["in_db_ratio"].notna()
    ]
    if data.empty:
        return None
    pivot = data.pivot_table(index="strategy", columns="peer", values="in_db_ratio")
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(pivot.columns))
    positions = range(len(pivot.index))
    for i, peer in enumerate(pivot.columns):
        ax.barh([p + i * height for p in positions], pivot[peer], height=height, label=peer)
    ax.set_yticks([p + height * (len(pivot.columns) - 1) / 2 for p in positions], pivot.index)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("strategy in-DB median / peer in-DB median (log; < 1 = strategy faster)")
    ax.set_title(f"Strategies vs. peers at {rows:,} rows (in-DB, server clock)")
    ax.legend(title="peer", fontsize="small")
    ax.grid(axis="x", which="both", alpha=0.3)
    return _png(fig)
