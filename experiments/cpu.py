"""CPU time each side of one load spends: the client, nginx, gunicorn and PostgreSQL (Linux).

The end-to-end target compares an HTTP upload with ``psql \\copy`` on a machine of two
cores, where every process of the path (the client's TLS, nginx, the gunicorn worker, the
backends) competes for the same cores. The CPU those processes used, divided by the cores,
is a floor on the wall time no scheduling can beat, and so is the CPU of the busiest
single-threaded process (a backend parsing its share runs on one core at a time); the
budget section reports both.

Each side is a process tree, named by its root pid. Its CPU is read from ``/proc/<pid>/stat``
before and after the load: for every living process of the tree ``utime + stime`` (all its
threads, the exited ones included) plus ``cutime + cstime`` (its children that exited and
were reaped meanwhile, e.g. a backend whose connection closed, or ``psql``). Each CPU second
is counted once. The kernel counts in clock ticks (``SC_CLK_TCK``, 10 ms on Linux), so one
process's figure is within a tick; a tree's within a tick per process. Where ``/proc`` is
not there (not Linux) or a root is unknown, that side is ``None``: not observed, never 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
#: Clock ticks per second of ``/proc/<pid>/stat``'s times.
TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
#: The sides a sample may record, in report order: the ``Sample`` field of each.
SIDES = {
    "client": "cpu_client_ms",
    "proxy": "cpu_proxy_ms",
    "service": "cpu_service_ms",
    "database": "cpu_db_ms",
}
#: The busiest single-threaded process of a load: its CPU is also a floor on the wall time.
SERIAL_FIELD = "cpu_serial_ms"


@dataclass(frozen=True)
class Stat:
    """What ``/proc/<pid>/stat`` says of one process (CPU in seconds)."""

    ppid: int
    own: float  # utime + stime: all its threads, the exited ones included
    reaped: float  # cutime + cstime: its children that exited and were waited for
    threads: int


def parse_stat(text: str) -> Stat:
    """One ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may hold spaces or parentheses
    itself, so the fields are counted from the last ``)``.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) ...
    # num_threads(20)
    own = (int(fields[11]) + int(fields[12])) * TICK_S
    reaped = (int(fields[13]) + int(fields[14])) * TICK_S
    return Stat(int(fields[1]), own, reaped, int(fields[17]))


def _processes() -> dict[int, Stat]:
    """Every visible process."""
    found: dict[int, Stat] = {}
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or unreadable
    return found


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds per named tree (None: root unknown or gone), each process's own CPU (not
    its reaped children's: a postmaster's would hold every backend that exited), and which
    processes are single-threaded (a backend, an nginx worker: such a process cannot use
    two cores at once)."""

    sides: dict[str, float | None]
    processes: dict[int, float]
    single: frozenset[int]


def snapshot(roots: Mapping[str, int | None]) -> Snapshot:
    """The CPU of each named process tree (root and all its descendants), now."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, stat in procs.items():
        children.setdefault(stat.ppid, []).append(pid)
    # A side's tree stops at another side's root: the runner (client) starts gunicorn and
    # nginx itself, and their CPU is theirs, not the client's.
    named = {root for root in roots.values() if root is not None}
    sides: dict[str, float | None] = {}
    processes: dict[int, float] = {}
    single: set[int] = set()
    for side, root in roots.items():
        if root is None or root not in procs:
            sides[side] = None
            continue
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            stat = procs[pid]
            total += stat.own + stat.reaped
            processes[pid] = stat.own
            if stat.threads == 1:
                single.add(pid)
            todo += [child for child in children.get(pid, []) if child not in named]
        sides[side] = total
    return Snapshot(sides, processes, frozenset(single))


class CpuWatch:
    """The CPU each side used between construction and ``used_ms()``, in ms (or None)."""

    def __init__(self, roots: Mapping[str, int | None]) -> None:
        unknown = set(roots) - set(SIDES)
        if unknown:
            raise ValueError(f"unknown sides {sorted(unknown)}; valid: {list(SIDES)}")
        self._roots = dict(roots)
        self._before = snapshot(self._roots)

    def used_ms(self) -> dict[str, float | None]:
        """Sample fields: ``cpu_client_ms`` ... for the sides watched, and ``cpu_serial_ms``,
        the most any one single-threaded process of them used (alive at the end: one started
        and gone meanwhile is not seen, so this is at most an underestimate)."""
        after = snapshot(self._roots)
        used: dict[str, float | None] = {}
        for side, start in self._before.sides.items():
            end = after.sides.get(side)
            # A tree whose root went away meanwhile took its times with it: not observed.
            used[SIDES[side]] = None if start is None or end is None else (end - start) * 1000
        # A process born meanwhile (a backend of a new connection) spent all of its CPU
        # inside the window.
        serial = [
            (after.processes[pid] - self._before.processes.get(pid, 0.0)) * 1000
            for pid in after.single
        ]
        used[SERIAL_FIELD] = max(serial) if serial else None
        return used


def postmaster_pid(backend_pid: int) -> int | None:
    """The local PostgreSQL server's postmaster, from one of its backends' pid.

    Only when that pid is a PostgreSQL process on this machine (a server elsewhere, or in
    another pid namespace, shows other pids or none): its parent is the postmaster.
    """
    try:
        ppid = parse_stat((PROC / str(backend_pid) / "stat").read_text()).ppid
        cmdline = (PROC / str(backend_pid) / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return ppid if cmdline.startswith(b"postgres") else None
