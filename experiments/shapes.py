"""Load shapes as pure functions of elapsed time: how many users, spawned how fast.

The locustfile's one ``LoadTestShape`` asks ``target()`` every second; keeping the
arithmetic here lets it be tested without Locust. Every shape ends at ``run_time``
(returns None); without a run time (the web UI) it cycles with a 60 s period.
"""

from __future__ import annotations

import math
from typing import Literal

Shape = Literal["steady", "ramp", "spike"]
SHAPES: tuple[Shape, ...] = ("steady", "ramp", "spike")

#: Period of a ramp or spike when no run time bounds the test (web UI).
CYCLE_S = 60.0
#: Share of the run spent ramping up before holding the peak.
RAMP_SHARE = 0.6
#: The spike: baseline load until 40 % of the run, peak load until 60 %, baseline again.
SPIKE_START, SPIKE_END = 0.4, 0.6


def baseline(users: int) -> int:
    """The spike's resting load: a quarter of the peak, at least one user."""
    return max(1, users // 4)


def target(
    shape: Shape, elapsed: float, users: int, spawn_rate: float, run_time: float | None
) -> tuple[int, float] | None:
    """(user count, spawn rate) at ``elapsed`` seconds, or None when the test must stop."""
    if users < 1 or spawn_rate <= 0:
        raise ValueError("users must be >= 1 and spawn_rate > 0")
    if run_time is not None and elapsed >= run_time:
        return None
    period = run_time if run_time is not None else CYCLE_S
    phase = elapsed / period if run_time is not None else (elapsed % period) / period
    if shape == "steady":
        return users, spawn_rate
    if shape == "ramp":
        if run_time is None and elapsed >= period:
            return users, spawn_rate  # unbounded: ramp once, then hold
        # Steps of one user, evenly spread over the ramp, then hold the peak.
        count = min(users, 1 + math.floor(phase / RAMP_SHARE * users))
        return count, spawn_rate
    if shape == "spike":
        if SPIKE_START <= phase < SPIKE_END:
            # All peak users at once: a spike is sudden, not ramped.
            return users, float(max(users, spawn_rate))
        return baseline(users), float(max(users, spawn_rate))
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
