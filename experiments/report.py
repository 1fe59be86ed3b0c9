"""A run folder rendered: chart PNGs, the self-contained ``index.html`` (jinja2, images as
data URIs) and the markdown summary printed at the end of a run."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from experiments import charts, floor, loadresults, perfprofile, stats, tuning
from experiments import cpu as cpu_mod
from experiments.results import Run

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    caption: str
    png: bytes | None

    @property
    def data_uri(self) -> str | None:
        if self.png is None:
            return None
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed once from the samples."""

    frame: pd.DataFrame
    table: pd.DataFrame
    ratios: pd.DataFrame
    checks: list[stats.BudgetCheck]
    budget_ms: float
    reference_rows: int
    chart_rows: int
    cores: int | None  # the machine's, for the CPU floors


def _chart_rows(frame: pd.DataFrame, reference: int) -> int:
    """The reference size when the run measured it, else its largest size (tiny runs)."""
    sizes = set(frame.loc[frame["ok"], "rows"].tolist())
    if reference in sizes or not sizes:
        return reference
    return int(max(sizes))


def analyse(run: Run, budget_ms: float | None = None) -> Analysis:
    meta = run.metadata
    budget = float(budget_ms if budget_ms is not None else meta.get("budget_ms", 50.0))
    reference = int(meta.get("reference_rows", 100_000))
    frame = run.frame()
    table = stats.summary(frame, budget)
    ratios = (
        stats.peer_ratios(table)
        if not table.empty
        else stats.peer_ratios(
            pd.DataFrame(columns=[*stats.CELL_KEYS, "in_db_median", "wall_median"])
        )
    )
    targets = stats.Targets.from_dict(meta.get("targets"))
    cores = meta.get("cpu_count")
    checks = stats.budget_checks(table, budget, reference, targets, cores)
    return Analysis(
        frame, table, ratios, checks, budget, reference, _chart_rows(frame, reference), cores
    )


def make_charts(a: Analysis) -> list[Chart]:
    has = not a.table.empty
    ref = a.chart_rows
    return [
        Chart(
            "in_db",
            "In-DB latency per strategy",
            "Every measured repetition; the red line is the budget. In-DB = server clock "
            "from the first to the last load statement, before COMMIT.",
            charts.in_db_latency(a.frame, a.budget_ms, ref),
        ),
        Chart(
            "phases",
            "Phase breakdown",
            "Medians per phase: client parse/encode, in-DB, commit, the rest of the client's "
            "load() call, and for the HTTP path what HTTP, multipart and the proxy add.",
            charts.phases(a.table, ref) if has else None,
        ),
        Chart(
            "scaling",
            "Scaling",
            "Median in-DB time against rows, log-log, with 95% "
            "bootstrap CIs; the budget line applies to the reference size.",
            charts.scaling(a.table, a.budget_ms) if has else None,
        ),
        Chart(
            "peers",
            "Peers as ratios",
            "Each strategy's in-DB median divided by each peer's (server clock on both "
            "sides); below 1 our strategy is faster.",
            charts.peer_ratios(a.ratios, ref),
        ),
    ]


def _ms(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    return f"{float(value):,.{digits}f}"


def _ci(low: Any, high: Any) -> str:
    if pd.isna(low) or pd.isna(high):
        return "\u2013"
    return f"{_ms(low)}\u2013{_ms(high)}"


def _ratio(value: Any) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "\u2013"
    # Two decimals, but keep pandas-sized gaps (0.004x) readable.
    return f"{float(value):.2f}x" if abs(float(value)) >= 0.1 else f"{float(value):.2g}x"


def _share(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    return f"{100 * float(value):.0f}%"


def _cells(table: pd.DataFrame) -> list[dict[str, Any]]:
    if table.empty:
        return []
    ordered = table.sort_values(
        ["kind", "path", "rows", "variant", "concurrency", "in_db_median"],
        ascending=[False, True, True, True, True, True],
    )
    out = []
    for _, r in ordered.iterrows():
        out.append(
            {
                "name": r["name"],
                "kind": r["kind"],
                "path": r["path"],
                "rows": f"{int(r['rows']):,}",
                "variant": r["variant"],
                "concurrency": int(r["concurrency"]),
                "n": int(r["n"]),
                "failures": int(r["failures"]),
                "error": r["error"],
                "in_db": _ms(r["in_db_median"]),
                "ci": _ci(r["in_db_ci_low"], r["in_db_ci_high"]),
                "p95": _ms(r["in_db_p95"]),
                "p99": _ms(r["in_db_p99"]),
                "over": _share(r["over_budget_share"]),
                "parse": _ms(r["parse_median"]),
                "commit": _ms(r["commit_median"]),
                "wall": _ms(r["wall_median"]),
                "http": _ms(r["http_median"]),
            }
        )
    return out


def cpu_view(a: Analysis) -> list[dict[str, Any]]:
    """The reference-size cells that recorded CPU (experiments/cpu.py): each side's median,
    the total, and the floor those leave on this machine's cores (stats.CpuFloor)."""
    if a.table.empty or "cpu_total_median" not in a.table:
        return []
    cells = a.table[(a.table["rows"] == a.reference_rows) & (a.table["variant"] == "logged")]
    out = []
    for _, r in cells.sort_values(["path", "wall_median"]).iterrows():
        cpu = stats.cpu_floor(r, a.cores)
        if cpu is None:
            continue
        out.append(
            {
                "name": r["name"],
                "path": r["path"],
                "wall": _ms(r["wall_median"]),
                "sides": [_ms(r[stats.CPU_MEDIANS[field]], 0) for field in cpu_mod.SIDES.values()],
                "total": _ms(cpu.total_ms, 0),
                "serial": _ms(cpu.serial_ms, 0),
                "floor": _ms(cpu.floor_ms, 0),
                "busy": _share(cpu.floor_ms / float(r["wall_median"])),
            }
        )
    return out


def _ratio_pivot(ratios: pd.DataFrame) -> tuple[list[str], list[dict[str, Any]]]:
    """Peers side by side: one row per (rows, variant, strategy, path), one column per peer,
    each cell "in-DB ratio / wall ratio"."""
    peer_names = sorted(ratios["peer"].unique()) if not ratios.empty else []
    rows = []
    keys = ["rows", "variant", "strategy", "path"]
    for (n, variant, strategy, path), group in ratios.groupby(keys, sort=True):
        by_peer = {r["peer"]: r for _, r in group.iterrows()}
        rows.append(
            {
                "rows": f"{int(str(n)):,}",
                "variant": variant,
                "strategy": strategy,
                "path": path,
                "values": [
                    f"{_ratio(by_peer[p]['in_db_ratio'])} / {_ratio(by_peer[p]['wall_ratio'])}"
                    if p in by_peer
                    else "\u2013"
                    for p in peer_names
                ],
            }
        )
    return peer_names, rows


def floor_view(run: Run, budget_ms: float) -> dict[str, Any]:
    """The "Server floor" subsection: its table, the profile, the computed verdict."""
    result = run.floor
    if result is None:
        note = str(run.metadata.get("floor_note") or "not measured (a run from before the floor)")
        return {"measured": False, "note": note, "verdict": "The floor was not measured."}
    rows = floor.summary(result)
    profile = result.profile
    return {
        "measured": True,
        "rows": f"{result.rows:,}",
        "csv_mb": f"{result.csv_bytes / 1e6:.1f}",
        "payload_mb": f"{result.payload_bytes / 1e6:.1f}",
        "encode_ms": _ms(result.encode_ms, 0),
        "reps": result.reps,
        "warmup": result.warmup,
        "error": result.error,
        "table": [
            {
                "connections": r.connections,
                "kind": r.kind,
                "n": r.n,
                "copy_median": _ms(r.copy_median),
                "copy_min": _ms(r.copy_min),
                "commit_median": _ms(r.commit_median),
                "commit_min": _ms(r.commit_min),
            }
            for r in rows
        ],
        "verdict": floor.verdict(rows, budget_ms),
        "profile": profile,
        "shares": [
            {
                "category": s.category,
                "percent": f"{s.percent:.1f}",
                "note": perfprofile.CATEGORY_NOTES[s.category],
            }
            for s in profile.shares
        ],
        "top": [
            {"symbol": sym, "category": cat, "percent": f"{pct:.1f}"}
            for sym, cat, pct in profile.top
        ],
    }


def render(run: Run, budget_ms: float | None = None) -> Path:
    """Write ``charts/*.png`` and ``index.html`` into the run folder; returns the HTML path."""
    a = analyse(run, budget_ms)
    chart_list = make_charts(a)
    chart_dir = run.folder / "charts"
    chart_dir.mkdir(exist_ok=True)
    for chart in chart_list:
        if chart.png is not None:
            (chart_dir / f"{chart.slug}.png").write_bytes(chart.png)
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    failures = a.frame[~a.frame["ok"]]
    html = env.get_template("report.html.j2").render(
        run_id=run.run_id,
        meta=run.metadata,
        budget_ms=a.budget_ms,
        reference_rows=a.reference_rows,
        checks=a.checks,
        cpu=cpu_view(a),
        cpu_sides=list(cpu_mod.SIDES),
        cores=a.cores,
        floor=floor_view(run, a.budget_ms),
        tuning_log=tuning.load(),
        charts=chart_list,
        cells=_cells(a.table),
        ratio_peers=_ratio_pivot(a.ratios)[0],
        ratios=_ratio_pivot(a.ratios)[1],
        failures=[
            {
                "name": r["name"],
                "path": r["path"],
                "rows": f"{int(r['rows']):,}",
                "variant": r["variant"],
                "rep": int(r["rep"]),
                "error": r["error"],
            }
            for _, r in failures.iterrows()
        ],
        n_samples=len(a.frame),
        load=loadresults.for_report(run.folder),
    )
    out = run.folder / "index.html"
    out.write_text(html, encoding="utf-8")
    return out


def markdown_summary(run: Run, budget_ms: float | None = None) -> str:
    """The table printed at the end of ``lab bench``: one line per cell plus the budget."""
    a = analyse(run, budget_ms)
    lines = [
        f"### Run {run.run_id}",
        "",
        "| name | path | rows | variant | conc | n | in-DB median ms [95% CI] | p95 | "
        f"> {a.budget_ms:g} ms | wall median ms | failures |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for c in _cells(a.table):
        failed = f"{c['failures']}: {c['error'][:60]}" if c["failures"] else ""
        lines.append(
            f"| {c['name']} | {c['path']} | {c['rows']} | {c['variant']} | {c['concurrency']} | "
            f"{c['n']} | {c['in_db']} [{c['ci']}] | {c['p95']} | {c['over']} | {c['wall']} | "
            f"{failed} |"
        )
    ref = a.ratios[(a.ratios["rows"] == a.reference_rows) & (a.ratios["variant"] == "logged")]
    if not ref.empty:
        peer_names, pivot = _ratio_pivot(ref)
        lines += [
            "",
            f"Peers at {a.reference_rows:,} rows, logged table: strategy median / peer median "
            "as in-DB ratio / wall ratio (< 1 = ours faster):",
            "",
            "| strategy | path | " + " | ".join(peer_names) + " |",
            "|---|---|" + "---:|" * len(peer_names),
        ]
        for row in pivot:
            lines.append(
                f"| {row['strategy']} | {row['path']} | " + " | ".join(row["values"]) + " |"
            )
    lines += ["", "Budget:", ""]
    for check in a.checks:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[check.passed]
        lines.append(f"- {verdict} — {check.title}: {check.measured} (target {check.target})")
    cpu = cpu_view(a)
    if cpu:
        lines += [
            "",
            f"CPU per side at {a.reference_rows:,} rows (medians, ms; floor = the most of "
            f"total / {a.cores} cores and the busiest process):",
            "",
            "| name | path | wall | " + " | ".join(cpu_mod.SIDES) + " | total | floor |",
            "|---|---|---:|" + "---:|" * (len(cpu_mod.SIDES) + 2),
        ]
        for c in cpu:
            lines.append(
                f"| {c['name']} | {c['path']} | {c['wall']} | "
                + " | ".join(c["sides"])
                + f" | {c['total']} | {c['floor']} |"
            )
    lines += ["", *_floor_lines(run, a.budget_ms)]
    return "\n".join(lines)


def _floor_lines(run: Run, budget_ms: float) -> list[str]:
    """The server floor in the markdown summary: table, profile shares, verdict."""
    view = floor_view(run, budget_ms)
    if not view["measured"]:
        return [f"Server floor: {view['note'].rstrip('.')}."]
    lines = [
        f"Server floor ({view['rows']} rows pre-encoded as binary COPY, COPY FREEZE into a "
        "table created in the transaction; server clock, ms):",
        "",
        "| N | kind | COPY median | COPY min | +commit median | +commit min | runs |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in view["table"]:
        lines.append(
            f"| {r['connections']} | {r['kind']} | {r['copy_median']} | {r['copy_min']} | "
            f"{r['commit_median']} | {r['commit_min']} | {r['n']} |"
        )
    if view["error"]:
        lines += ["", f"The floor stopped after a failure: {view['error']}"]
    profile = view["profile"]
    if profile.taken:
        shares = ", ".join(f"{s['category']} {s['percent']}%" for s in view["shares"])
        lines += ["", f"Profile (N=1 durable, {profile.samples} samples): {shares}."]
    else:
        lines += ["", f"No profile: {profile.reason.rstrip('.')}."]
    return [*lines, "", view["verdict"]]
