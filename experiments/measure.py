"""One measured load: the ``Sample`` row every path (in-process, HTTP, peer) produces.

A run keeps every sample, warm-ups included (flagged), so statistics can be recomputed
from the raw data later. Metrics a path cannot observe are ``None`` (NaN in the DataFrame),
never a made-up zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from experiments.cpu import SERIAL_FIELD, SIDES

#: How a load was driven: the strategy called in the runner's process, the strategy behind
#: the upload service over HTTP, or a peer tool (psql, pandas, ADBC) on the same file.
PATHS = ("inproc", "http", "peer")
KINDS = ("strategy", "peer")
#: Table variant -> table in the ``ingest`` schema (migration 002).
VARIANTS = {"logged": "records", "unlogged": "records_unlogged", "pk": "records_pk"}

TIMING_FIELDS = ("parse_ms", "in_db_ms", "commit_ms", "total_ms", "wall_ms", "http_ms")
#: CPU each side used over the load (``experiments/cpu.py``): client, proxy, service, database,
#: and the busiest single-threaded process.
CPU_FIELDS = (*SIDES.values(), SERIAL_FIELD)


@dataclass(frozen=True)
class Sample:
    """One repetition of one cell (one worker's load when concurrency > 1).

    parse_ms, in_db_ms, commit_ms, total_ms: as ``strategies.base.Timings`` (for HTTP:
    the server's own numbers from the response; for peers: same method, see ``peers``).
    wall_ms: the client's clock around the whole operation (HTTP: the request/response).
    http_ms: wall_ms minus the server's total_ms (HTTP path only).
    """

    run_id: str
    kind: str
    path: str
    name: str
    rows: int
    variant: str
    concurrency: int
    rep: int
    worker: int
    warmup: bool
    ok: bool
    error: str = ""
    rows_loaded: int | None = None
    bytes: int | None = None
    parse_ms: float | None = None
    in_db_ms: float | None = None
    commit_ms: float | None = None
    total_ms: float | None = None
    wall_ms: float | None = None
    http_ms: float | None = None
    started_at: str = ""
    #: HTTP path: the serving worker's peak RSS growth over the upload (experiments/workers.py)
    rss_growth_mb: float | None = None
    #: CPU time of each side over the load, ms (experiments/cpu.py); None where not observed
    #: (the side is not in the path, /proc is unavailable, or concurrency > 1)
    cpu_client_ms: float | None = None
    cpu_proxy_ms: float | None = None
    cpu_service_ms: float | None = None
    cpu_db_ms: float | None = None
    #: the busiest single-threaded process among those sides (a floor on wall_ms too)
    cpu_serial_ms: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {self.path!r}")
        if (self.path == "peer") != (self.kind == "peer"):
            raise ValueError("peer samples (and only they) use path 'peer'")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {self.variant!r}")
        if self.rows < 0 or self.rep < 0 or self.worker < 0 or self.concurrency < 1:
            raise ValueError("rows, rep and worker must be >= 0 and concurrency >= 1")
        if not self.ok and not self.error:
            raise ValueError("a failed sample must say why (error)")
        for name in TIMING_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            # http_ms may dip below zero by clock granularity; anything else must not.
            if not math.isfinite(value) or (name != "http_ms" and value < 0):
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
        for name in CPU_FIELDS:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")

    @property
    def cell_key(self) -> tuple[str, str, int, str, int]:
        """The key of the matrix cell this sample belongs to (``matrix.Cell.key``)."""
        return (self.path, self.name, self.rows, self.variant, self.concurrency)

    @property
    def table(self) -> str:
        return VARIANTS[self.variant]

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["table"] = self.table
        return row

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: DataFrame columns, in order (documented in docs/experiments.md).
COLUMNS = (
    "run_id",
    "kind",
    "path",
    "name",
    "rows",
    "variant",
    "table",
    "concurrency",
    "rep",
    "worker",
    "warmup",
    "ok",
    "error",
    "rows_loaded",
    "bytes",
    *TIMING_FIELDS,
    "started_at",
    "rss_growth_mb",
    *CPU_FIELDS,
)
