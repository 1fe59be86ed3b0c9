"""Child processes that do not outlive the lab process that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """``preexec_fn`` for servers the lab starts (gunicorn, nginx, Locust): the kernel sends
    them SIGTERM when their parent dies, even by SIGKILL, so a killed test run or ``lab``
    command leaves no orphans on the machine. A no-op where prctl is unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
