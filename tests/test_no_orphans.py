"""A `lab` process killed outright (SIGKILL: no cleanup runs) takes its servers —
gunicorn with its workers, nginx with its workers — with it (lab/procs.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from lab.config import PROJECT_ROOT

SCRIPT = """
import sys, time
from service.stack import running_stack
with running_stack(sys.argv[1], workers=1, nginx=True) as stack:
    print(stack.gunicorn_pid, flush=True)
    time.sleep(600)
"""


def test_servers_die_with_a_killed_parent(db_url: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, db_url],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        gunicorn_pid = int(parent.stdout.readline())
        children = psutil.Process(parent.pid).children(recursive=True)
        assert any(c.pid == gunicorn_pid for c in children)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    # Hang detection only: the kernel signals them at once; shutting down takes a moment.
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, [(p.pid, p.name()) for p in alive]
