"""The whole service on this machine: migrations, gunicorn, and nginx with TLS in front.

``running_stack`` is what ``lab serve``, the end-to-end tests, the experiments and the
load tests use: everything listens on loopback at free ports, and everything started is
stopped on exit (process groups, so no worker outlives its master).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab.config import (
    ENV_DATABASE_URL,
    ENV_HOST,
    ENV_PORT,
    ENV_SOCKET,
    ENV_WORKERS,
    PROJECT_ROOT,
    Settings,
)
from lab.errors import LabError
from lab.migrate import migrate
from lab.procs import die_with_parent
from service.tls import ensure_certificate

GUNICORN_CONF = PROJECT_ROOT / "gunicorn.conf.py"
NGINX_TEMPLATE = PROJECT_ROOT / "nginx.conf"
APP = "service:create_app()"
#: Waiting for /healthz: gunicorn boots in ~1 s here; a slow shared CI machine gets 60.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 35.0  # gunicorn's graceful_timeout (30 s) plus a margin


@dataclass(frozen=True)
class StackInfo:
    http_url: str  # gunicorn over TCP, e.g. "http://127.0.0.1:8000"
    https_url: str | None  # nginx TLS in front of the gunicorn socket, or None without nginx
    ca_file: Path | None  # the self-signed cert, for clients that verify
    gunicorn_pid: int
    nginx_pid: int | None = None  # nginx's master process, when nginx is in front


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def render_nginx_conf(
    *, run_dir: Path, listen: str, socket_path: Path, cert: Path, key: Path, max_body: int
) -> str:
    """The template with this machine's paths; nginx's own ``$variables`` stay as they are."""
    values = {
        # As root, nginx would switch its workers to 'nobody', who cannot reach our temp
        # folders; for this loopback-only development stack they keep root's identity.
        "NGINX_USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
        "NGINX_RUN_DIR": str(run_dir),
        "NGINX_ERROR_LOG": str(run_dir / "nginx-error.log"),
        "NGINX_ACCESS_LOG": str(run_dir / "nginx-access.log"),
        "NGINX_LISTEN": listen,
        "NGINX_UPSTREAM_SOCKET": str(socket_path),
        "NGINX_TLS_CERT": str(cert),
        "NGINX_TLS_KEY": str(key),
        "NGINX_MAX_BODY": str(max_body),
    }
    return string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(values)


def _get(url: str, ca_file: Path | None, timeout: float = 2.0) -> int:
    """Status of GET url (http or https on loopback)."""
    scheme, _, rest = url.partition("://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    conn: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        return conn.getresponse().status
    finally:
        conn.close()


def _wait_healthy(
    url: str, proc: subprocess.Popen[bytes], ca_file: Path | None, what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise LabError(
                f"{what} exited with status {proc.returncode} while starting" + _tail(log),
                code="start_failed",
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _get(url + "/healthz", ca_file) == 200:
                return
        if time.monotonic() > deadline:
            raise LabError(
                f"{what} did not answer {url}/healthz within {START_TIMEOUT_S:.0f} s" + _tail(log),
                code="start_failed",
            )
        time.sleep(0.1)


def _tail(log: Path, lines: int = 20) -> str:
    if not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {log.name} (tail) ---\n" + "\n".join(text)


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process; if it has not ended in time, kill its whole group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (workers), if any
    proc.wait()


@contextlib.contextmanager
def running_stack(
    database_url: str,
    *,
    workers: int | None = None,
    nginx: bool = True,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    console: bool = False,
    port: int | None = None,
) -> Iterator[StackInfo]:
    """Migrate, start gunicorn (Unix socket + TCP) and nginx (TLS), yield where they are.

    ``home`` holds the TLS certificate (``<home>/tls``; default LAB_HOME). ``env`` adds
    LAB_* settings for the workers. Logs go to files in a temporary run folder, or to this
    process's stdout/stderr with ``console=True`` (``lab serve``). ``port`` fixes
    gunicorn's TCP port (default: a free one).
    """
    settings = Settings.from_env()
    home = (home or settings.home).resolve()
    migrate(database_url, settings.migrations_dir)
    # A short path in /tmp: Unix socket paths are limited to ~107 bytes.
    run_dir = Path(tempfile.mkdtemp(prefix="lab-stack-"))
    procs: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []
    logs: list[IO[bytes]] = []
    try:
        port = port or free_port()
        socket_path = run_dir / "gunicorn.sock"
        child_env = {
            **os.environ,
            **(env or {}),
            ENV_DATABASE_URL: database_url,
            ENV_HOST: "127.0.0.1",
            ENV_PORT: str(port),
            ENV_SOCKET: str(socket_path),
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        if workers is not None:
            child_env[ENV_WORKERS] = str(workers)
        gunicorn_log = run_dir / "gunicorn.log"
        out: IO[bytes] | None = None
        if not console:
            out = gunicorn_log.open("wb")
            logs.append(out)
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP],
            cwd=PROJECT_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        # SIGTERM: gunicorn stops accepting, lets running uploads finish, then exits.
        procs.append((gunicorn, signal.SIGTERM))
        http_url = f"http://127.0.0.1:{port}"
        _wait_healthy(http_url, gunicorn, None, "gunicorn", gunicorn_log)

        https_url: str | None = None
        ca_file: Path | None = None
        nginx_pid: int | None = None
        binary = nginx_binary() if nginx else None
        if binary is not None:
            cert, key = ensure_certificate(home / "tls")
            tls_port = free_port()
            # The whole request body, as in compose (envelope included for multipart).
            max_body = Settings.from_env(child_env).max_upload_bytes
            conf = run_dir / "nginx.conf"
            conf.write_text(
                render_nginx_conf(
                    run_dir=run_dir,
                    listen=f"127.0.0.1:{tls_port}",
                    socket_path=socket_path,
                    cert=cert,
                    key=key,
                    max_body=max_body,
                )
            )
            nginx_proc = subprocess.Popen(
                [
                    binary,
                    "-p",
                    str(run_dir),
                    "-c",
                    str(conf),
                    "-e",
                    str(run_dir / "nginx-error.log"),
                    "-g",
                    "daemon off;",
                ],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            # SIGQUIT: graceful shutdown (finish requests in flight).
            procs.append((nginx_proc, signal.SIGQUIT))
            https_url = f"https://127.0.0.1:{tls_port}"
            ca_file = cert
            nginx_pid = nginx_proc.pid
            _wait_healthy(https_url, nginx_proc, ca_file, "nginx", run_dir / "nginx-error.log")

        yield StackInfo(
            http_url=http_url,
            https_url=https_url,
            ca_file=ca_file,
            gunicorn_pid=gunicorn.pid,
            nginx_pid=nginx_pid,
        )
    finally:
        for proc, sig in reversed(procs):
            _stop(proc, sig)
        for f in logs:
            f.close()
        shutil.rmtree(run_dir, ignore_errors=True)
