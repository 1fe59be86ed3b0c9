"""One load run: the service up, its table emptied, Locust against it, then the audit.

``run_headless`` is ``tox -e load`` / ``lab load``: bounded users and time, Locust as a
subprocess in its own process group with a hard timeout, its CSV and HTML report in the
run folder, then the no-data-lost audit and ``load.json``. ``run_web`` is the same
service with Locust's web UI on 127.0.0.1 until Ctrl-C, audited when it ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from experiments import audit, loadresults, payloads, shapes
from lab.cluster import EmbeddedCluster
from lab.config import PROJECT_ROOT, Settings
from lab.database import resolve_url
from lab.errors import LabError
from lab.migrate import migrate
from lab.procs import die_with_parent

if TYPE_CHECKING:
    from service.stack import StackInfo

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
REPORTS = PROJECT_ROOT / "reports"

#: Bounds: a load run is a measurement on a shared machine, never a soak test.
MAX_USERS = 64
MAX_RUN_TIME_S = 600
#: Users finish the upload in flight when the run ends (an upload cut off mid-way would be
#: unaccounted for in the audit); longer than the users' 120 s network timeout.
STOP_TIMEOUT_S = 130
#: Locust's own start-up and payload generation, on top of run time and stop timeout.
STARTUP_ALLOWANCE_S = 60


@dataclass(frozen=True)
class LoadConfig:
    users: int = 4
    spawn_rate: float = 2.0
    run_time_s: int = 30
    rows: int = 10_000
    strategy_mix: str = "psycopg-text:1"
    #: Share of uploads carrying a bad row, which the service must refuse whole.
    reject_share: float = 0.1
    shape: shapes.Shape = "steady"
    table: str = "records"
    body: payloads.Encoding = "multipart"
    #: Load through nginx over TLS (the production path) instead of gunicorn's TCP port.
    nginx: bool = True
    workers: int | None = None
    #: Keep the loaded rows after the audit (default: truncate; the ledger keeps the record).
    keep_rows: bool = False

    def validate(self) -> LoadConfig:
        """The config with a normalised strategy mix; refuses values outside the bounds."""
        if not 1 <= self.users <= MAX_USERS:
            raise LabError(f"users must be between 1 and {MAX_USERS}", code="bad_option")
        if self.spawn_rate <= 0:
            raise LabError("spawn rate must be > 0", code="bad_option")
        if not 1 <= self.run_time_s <= MAX_RUN_TIME_S:
            raise LabError(
                f"run time must be between 1 s and {MAX_RUN_TIME_S} s", code="bad_option"
            )
        if self.rows < 1:
            raise LabError("rows per upload must be at least 1", code="bad_option")
        if not 0 <= self.reject_share < 1:
            raise LabError("reject share must be >= 0 and < 1", code="bad_option")
        if self.shape not in shapes.SHAPES:
            raise LabError(f"shape must be one of {', '.join(shapes.SHAPES)}", code="bad_option")
        import strategies

        mix = payloads.parse_mix(self.strategy_mix)
        for name, _ in mix:
            strategies.get(name)  # unknown names: a LabError listing the valid ones
        return replace(self, strategy_mix=payloads.format_mix(mix))


@dataclass(frozen=True)
class LoadOutcome:
    run_dir: Path
    summary: loadresults.LoadSummary | None
    audit: audit.AuditResult
    locust_exit: int
    timed_out: bool

    @property
    def ok(self) -> bool:
        """Passing means: Locust ended by itself, no request failed, and the audit holds."""
        failures = self.summary.failures if self.summary else 0
        return self.audit.passed and failures == 0 and self.locust_exit == 0 and not self.timed_out


def parse_duration(text: str) -> int:
    """``"30"``, ``"30s"``, ``"2m"``, ``"1m30s"`` -> seconds (Locust's run-time syntax)."""
    raw = text.strip().lower()
    if not raw:
        raise LabError("run time is empty; give e.g. 30s", code="bad_option")
    if raw.isdigit():
        return int(raw)
    total, number = 0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for ch in raw:
        if ch.isdigit():
            number += ch
        elif ch in units and number:
            total += int(number) * units[ch]
            number = ""
        else:
            raise LabError(f"run time {text!r} is not like 30s, 2m or 1m30s", code="bad_option")
    if number:
        raise LabError(f"run time {text!r} ends without a unit", code="bad_option")
    return total


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return "load-" + now.strftime("%Y%m%dT%H%M%SZ")


def locust_command(
    config: LoadConfig,
    *,
    host: str,
    run_dir: Path,
    ack_file: Path,
    ca_file: Path | None,
    web_port: int | None = None,
) -> list[str]:
    """The Locust command line: headless and bounded, or the web UI on 127.0.0.1."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        host,
        "-u",
        str(config.users),
        "-r",
        str(config.spawn_rate),
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--csv",
        str(run_dir / "locust"),
        "--html",
        str(run_dir / "locust.html"),
        "--logfile",
        str(run_dir / "locust.log"),
        "--rows",
        str(config.rows),
        "--strategy-mix",
        config.strategy_mix,
        "--reject-share",
        str(config.reject_share),
        "--shape",
        config.shape,
        "--table",
        config.table,
        "--body",
        config.body,
        "--ack-file",
        str(ack_file),
    ]
    if ca_file is not None:
        command += ["--ca-file", str(ca_file)]
    if web_port is None:
        command += ["--headless", "--only-summary", "-t", f"{config.run_time_s}s"]
    else:
        command += ["--web-host", "127.0.0.1", "--web-port", str(web_port)]
    return command


def _locust_env() -> dict[str, str]:
    """The environment minus LOCUST_* (they would override our options), plus the tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def stop_group(proc: subprocess.Popen[bytes], *, grace: float = STOP_TIMEOUT_S + 15) -> None:
    """Ask Locust to stop (SIGINT: it lets users finish, then writes its reports); after
    ``grace`` seconds, or once it has exited, kill whatever is left of its process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[str]:
    """DATABASE_URL (or the given URL), else the embedded cluster, stopped again at the
    end if this run started it. Migrated either way."""
    settings = Settings.from_env()
    if database_url:
        settings = replace(settings, database_url=database_url)
    cluster = None if settings.database_url else EmbeddedCluster(settings.home)
    started = cluster is not None and not cluster.status().running
    try:
        url = resolve_url(settings)
        migrate(url, settings.migrations_dir)
        yield url
    finally:
        if started and cluster is not None:
            cluster.down()


def _target(stack: StackInfo) -> tuple[str, Path | None]:
    if stack.https_url:
        return stack.https_url, stack.ca_file
    return stack.http_url, None


def _summarise(
    config: LoadConfig,
    run_id: str,
    run_dir: Path,
    host: str,
    log: audit.AckLog,
    ledger: list[audit.LedgerRow],
    result: audit.AuditResult,
    web: bool,
) -> loadresults.LoadSummary | None:
    stats_csv = run_dir / "locust_stats.csv"
    if not stats_csv.exists():
        return None
    aggregate, endpoints = loadresults.read_stats_csv(stats_csv)
    if aggregate.requests == 0:
        return None  # a web session in which no swarm was started
    if web:
        # The web UI's run time is whatever the swarms took: first request to last answer.
        run_time_s = max((a.finished for a in log.acks), default=0.0) - min(
            (a.started for a in log.acks), default=0.0
        )
    else:
        run_time_s = float(config.run_time_s)
    in_db = [r.in_db_ms for r in ledger if r.status == "succeeded" and r.in_db_ms is not None]
    return loadresults.LoadSummary(
        run_id=run_id,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        target=host,
        shape=config.shape,
        users=config.users,
        run_time_s=round(run_time_s, 1),
        rows_per_upload=config.rows,
        strategy_mix=config.strategy_mix,
        requests=aggregate.requests,
        failures=aggregate.failures,
        requests_per_s=aggregate.requests_per_s,
        rows=result.acknowledged_rows,
        rows_per_s=loadresults.rows_per_second([(a.rows, a.started, a.finished) for a in log.acks]),
        p50_ms=aggregate.p50_ms,
        p95_ms=aggregate.p95_ms,
        p99_ms=aggregate.p99_ms,
        rejected=log.rejected,
        audit_passed=result.passed,
        server_in_db_p50_ms=loadresults.percentile(in_db, 50),
        server_in_db_p95_ms=loadresults.percentile(in_db, 95),
        endpoints=endpoints,
        html_report="locust.html",
        stats_csv="locust_stats.csv",
    )


def _finish(
    config: LoadConfig,
    run_id: str,
    run_dir: Path,
    host: str,
    url: str,
    since: dt.datetime,
    ack_file: Path,
    locust_exit: int,
    timed_out: bool,
    web: bool = False,
) -> LoadOutcome:
    log = audit.read_log(ack_file)
    ledger, table_rows = audit.fetch(url, config.table, since)
    result = audit.compare(log, ledger, table_rows)
    if not config.keep_rows:
        audit.empty(url, config.table)
    summary = _summarise(config, run_id, run_dir, host, log, ledger, result, web)
    if summary is not None:
        loadresults.write(
            run_dir,
            summary,
            {
                "config": asdict(config),
                "database": {"server_version": audit.server_version(url)},
                "locust": {"exit_code": locust_exit, "timed_out": timed_out},
                "audit": {
                    **{k: v for k, v in asdict(result).items() if k != "checks"},
                    "passed": result.passed,
                    "checks": [asdict(c) for c in result.checks],
                },
            },
        )
        _point_latest(run_dir)
    return LoadOutcome(run_dir, summary, result, locust_exit, timed_out)


def _point_latest(run_dir: Path) -> None:
    """``reports/latest-load`` -> the newest load run (when it lives under reports/)."""
    if run_dir.parent.resolve() != REPORTS.resolve():
        return
    link = REPORTS / "latest-load"
    with contextlib.suppress(OSError):
        link.unlink(missing_ok=True)
        link.symlink_to(run_dir.name)


def _prepare(out: Path | None) -> tuple[str, Path, Path]:
    run_id = new_run_id()
    run_dir = (out or REPORTS / run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ack_file = run_dir / "acks.jsonl"
    ack_file.unlink(missing_ok=True)
    return run_id, run_dir, ack_file


def run_headless(
    config: LoadConfig,
    *,
    database_url: str | None = None,
    out: Path | None = None,
    say: Callable[[str], None] = print,
) -> LoadOutcome:
    """A bounded Locust run against a fresh service on loopback, then the audit."""
    from service.stack import running_stack

    config = config.validate()
    run_id, run_dir, ack_file = _prepare(out)
    with _database(database_url) as url:
        with running_stack(url, workers=config.workers, nginx=config.nginx) as stack:
            host, ca_file = _target(stack)
            since = audit.start_run(url, config.table)
            command = locust_command(
                config, host=host, run_dir=run_dir, ack_file=ack_file, ca_file=ca_file
            )
            say(
                f"load: {config.users} users ({config.shape}) for {config.run_time_s}s "
                f"against {host}, {config.rows} rows per upload, mix {config.strategy_mix}"
            )
            timed_out = False
            with (run_dir / "locust.out").open("wb") as output:
                proc = subprocess.Popen(
                    command,
                    cwd=PROJECT_ROOT,
                    env=_locust_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
                try:
                    proc.wait(timeout=config.run_time_s + STOP_TIMEOUT_S + STARTUP_ALLOWANCE_S)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    say("load: Locust overran its time limit; stopping it")
                finally:
                    stop_group(proc)
        # The stack is down: every request has finished one way or the other.
        return _finish(
            config, run_id, run_dir, host, url, since, ack_file, proc.returncode, timed_out
        )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_web(
    config: LoadConfig,
    *,
    web_port: int = 8089,
    database_url: str | None = None,
    out: Path | None = None,
    say: Callable[[str], None] = print,
) -> LoadOutcome:
    """The service plus Locust's web UI on 127.0.0.1:web_port, until Ctrl-C or SIGTERM;
    the session's uploads are audited when it ends."""
    from service.stack import running_stack

    config = config.validate()
    run_id, run_dir, ack_file = _prepare(out)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with _database(database_url) as url:
            with running_stack(url, workers=config.workers, nginx=config.nginx) as stack:
                host, ca_file = _target(stack)
                since = audit.start_run(url, config.table)
                command = locust_command(
                    config,
                    host=host,
                    run_dir=run_dir,
                    ack_file=ack_file,
                    ca_file=ca_file,
                    web_port=web_port,
                )
                with (run_dir / "locust.out").open("wb") as output:
                    proc = subprocess.Popen(
                        command,
                        cwd=PROJECT_ROOT,
                        env=_locust_env(),
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=die_with_parent,
                    )
                    say(f"Locust web UI: http://127.0.0.1:{web_port}/  (service: {host})")
                    say("press Ctrl-C to stop; the session is audited when it ends")
                    try:
                        proc.wait()
                    except KeyboardInterrupt:
                        say("load: stopping Locust")
                    finally:
                        stop_group(proc)
            return _finish(config, run_id, run_dir, host, url, since, ack_file, 0, False, web=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
