"""The upload service's worker memory around one HTTP load (Linux ``/proc``).

Before the upload every gunicorn worker's peak RSS is reset (``clear_refs`` 5) and its
RSS read; after it, the peak is read again. The growth of a worker is its peak minus
its RSS before; the sample keeps the largest over the workers (the one that served the
upload). Where ``/proc`` does not allow this (another user's processes, not Linux) the
sample simply has no RSS figure.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's child processes (its workers)."""
    try:
        text = (PROC / str(master) / "task" / str(master) / "children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssWatch:
    """Peak RSS growth of the workers over one upload, in MB (or None when unknown)."""

    def __init__(self, master: int | None) -> None:
        self._before: dict[int, int] = {}
        for pid in worker_pids(master) if master else []:
            try:
                (PROC / str(pid) / "clear_refs").write_text("5")
            except OSError:
                continue
            rss = _status_kb(pid, "VmRSS")
            if rss is not None:
                self._before[pid] = rss

    def growth_mb(self) -> float | None:
        growths = [
            (peak - before) / 1024
            for pid, before in self._before.items()
            if (peak := _status_kb(pid, "VmHWM")) is not None
        ]
        return max(growths) if growths else None
