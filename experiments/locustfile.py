"""Locust load test of the upload service: run by the ``locust`` binary, imported by nothing.

Locust monkey-patches the standard library with gevent on import, so no other module
imports this file; ``lab load`` starts ``locust -f experiments/locustfile.py`` as a
subprocess. Everything it needs from the lab (payload building, load shapes) is pure.

Each user uploads, back to back, one of the payloads built at test start: a good CSV of
``--rows`` rows through a strategy picked by ``--strategy-mix`` weights or, for
``--reject-share`` of the requests, the same CSV plus one bad row, which the service must
refuse whole with a 4xx JSON error naming its line. Every answer is appended to
``--ack-file`` (2xx: upload id and rows) for the no-data-lost audit (experiments/audit.py).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import gevent
import gevent.ssl
from locust import LoadTestShape, TaskSet, constant, events
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager
from locust.env import Environment

from experiments import payloads, shapes

REJECT = "rejected"


@events.init_command_line_parser.add_listener
def _add_options(parser: LocustArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000, help="data rows per upload")
    parser.add_argument(
        "--strategy-mix",
        default="psycopg-text:1",
        help='strategies and their weights, e.g. "psycopg-text:3,psycopg-binary:1"',
    )
    parser.add_argument(
        "--reject-share",
        type=float,
        default=0.1,
        help="share of uploads with a bad last row, which must be rejected (0: none)",
    )
    parser.add_argument("--shape", default="steady", choices=shapes.SHAPES, help="load shape")
    parser.add_argument("--table", default="records", help="target table in schema ingest")
    parser.add_argument(
        "--body", default="multipart", choices=payloads.ENCODINGS, help="request body encoding"
    )
    parser.add_argument(
        "--ack-file",
        default="",
        include_in_web_ui=False,
        help="JSON-lines file receiving every 2xx upload id and row count (for the audit)",
    )
    parser.add_argument(
        "--ca-file",
        default="",
        include_in_web_ui=False,
        help="CA certificate to verify an https host with",
    )


@dataclass
class Plan:
    """What the current test sends, rebuilt at every test start (options may change in the
    web UI between runs). Building it up front keeps CSV generation off the request path."""

    table: str
    #: The strategy mix; bad uploads pick their strategy from it with the same weights.
    mix: tuple[tuple[str, int], ...]
    good: payloads.Payload
    bad: payloads.Payload
    acks: IO[str] | None = None

    def any_strategy(self) -> str:
        names = [name for name, _ in self.mix]
        weights = [weight for _, weight in self.mix]
        return random.choices(names, weights)[0]

    def record(self, **fields: Any) -> None:
        if self.acks is not None:
            # One write per line: greenlets never interleave inside a blocking file write.
            self.acks.write(json.dumps(fields) + "\n")
            self.acks.flush()


PLAN: Plan | None = None


def _task(strategy: str | None) -> Callable[[UploadUser], None]:
    def run(user: UploadUser) -> None:
        if strategy is None:
            user.upload_bad()
        else:
            user.upload(strategy)

    run.__name__ = f"upload[{strategy or REJECT}]"
    return run


@events.test_start.add_listener
def _build_plan(environment: Environment, **_: Any) -> None:
    global PLAN
    options = environment.parsed_options
    assert options is not None
    encoding: payloads.Encoding = options.body
    mix = payloads.parse_mix(options.strategy_mix)
    if PLAN is not None and PLAN.acks is not None:
        PLAN.acks.close()
    PLAN = Plan(
        table=options.table,
        mix=mix,
        good=payloads.good(options.rows, encoding=encoding),
        bad=payloads.bad(options.rows, encoding=encoding),
        acks=open(options.ack_file, "a", encoding="utf-8") if options.ack_file else None,  # noqa: SIM115
    )
    tasks: list[TaskSet | Callable[..., Any]] = []
    for name, weight in payloads.task_weights(mix, options.reject_share):
        tasks += [_task(name)] * weight
    UploadUser.tasks = tasks
    if options.ca_file:
        UploadUser.insecure = False
        UploadUser.ssl_context_factory = _verifying(options.ca_file)


def _verifying(ca_file: str) -> Callable[..., gevent.ssl.SSLContext]:
    """An SSL context factory trusting ``ca_file``. geventhttpclient calls the factory with
    ``cafile=None`` when the user gives no CA, which would drop a bound ``cafile``."""

    def factory(*_: Any, **__: Any) -> gevent.ssl.SSLContext:
        return gevent.ssl.create_default_context(cafile=ca_file)

    return factory


#: Locust rewrites its ``--csv`` stats once a second and not again at exit; waiting this
#: long after the last user stopped lets the files hold the final numbers.
CSV_SETTLE_S = 1.5


@events.test_stop.add_listener
def _close_acks(environment: Environment, **_: Any) -> None:
    if PLAN is not None and PLAN.acks is not None:
        PLAN.acks.close()
        PLAN.acks = None
    gevent.sleep(CSV_SETTLE_S)


def _error_of(response: ResponseContextManager) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, TypeError):
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _transport_error(response: ResponseContextManager) -> str:
    """The connection-level error of a request that got no HTTP answer, if any."""
    return str(getattr(response, "error", None) or response.request_meta.get("exception") or "")


class UploadUser(FastHttpUser):
    """Uploads back to back (closed loop): the request rate is what the service sustains."""

    wait_time = constant(0)
    # A 100k-row upload on a busy 2-core machine takes seconds; a timeout that fires while
    # the server still commits would be counted as a loss by the audit, so be generous.
    network_timeout = 120.0
    connection_timeout = 10.0
    # The tasks are set at test start from --strategy-mix; this default is never sent.
    tasks = [_task("psycopg-text")]  # noqa: RUF012 (Locust reads tasks from the class)

    def _post(
        self, strategy: str, payload: payloads.Payload, label: str
    ) -> tuple[ResponseContextManager, float]:
        assert PLAN is not None
        path = f"/tables/{quote(PLAN.table)}/upload?strategy={quote(strategy)}"
        started = time.time()
        response = self.client.post(
            path,
            data=payload.body,  # type: ignore[arg-type]  # bytes work; locust's hint says str
            headers={"Content-Type": payload.content_type},
            # One stats line per strategy (Locust shows the method in its own column).
            name=f"/tables/{PLAN.table}/upload [{label}]",
            catch_response=True,
        )
        return response, started

    def upload(self, strategy: str) -> None:
        assert PLAN is not None
        response, started = self._post(strategy, PLAN.good, strategy)
        with response:
            finished = time.time()
            if 200 <= response.status_code < 300:
                try:
                    body = response.json()
                    upload_id, rows = str(body["upload_id"]), int(body["rows"])
                except (ValueError, TypeError, KeyError) as exc:
                    PLAN.record(kind="error", status=response.status_code, reason=str(exc))
                    response.failure(f"2xx without upload_id/rows: {exc}")
                    return
                PLAN.record(
                    kind="ack",
                    upload_id=upload_id,
                    rows=rows,
                    strategy=strategy,
                    started=started,
                    finished=finished,
                )
                if rows != PLAN.good.rows:
                    response.failure(f"acknowledged {rows} rows of {PLAN.good.rows} sent")
                return
            error = _error_of(response)
            PLAN.record(kind="error", status=response.status_code, error=error)
            response.failure(
                f"HTTP {response.status_code} {error.get('code', '')}: "
                f"{error.get('message') or _transport_error(response)}"
            )

    def upload_bad(self) -> None:
        """A file whose last row is bad must be refused whole, with the line of the error."""
        assert PLAN is not None
        strategy = PLAN.any_strategy()
        response, started = self._post(strategy, PLAN.bad, REJECT)
        with response:
            status = response.status_code
            error = _error_of(response)
            if 200 <= status < 300:
                try:
                    body = response.json()
                    PLAN.record(
                        kind="ack",
                        upload_id=str(body["upload_id"]),
                        rows=int(body["rows"]),
                        strategy=strategy,
                        started=started,
                        finished=time.time(),
                    )
                except (ValueError, TypeError, KeyError):
                    PLAN.record(kind="error", status=status)
                response.failure("a CSV with a bad row was accepted")
            elif 400 <= status < 500 and PLAN.bad.names_bad_line(error.get("line")):
                PLAN.record(
                    kind="rejected", status=status, code=error.get("code"), strategy=strategy
                )
                response.success()
            else:
                PLAN.record(kind="error", status=status, error=error)
                response.failure(
                    f"expected a 4xx error at record {PLAN.bad.bad_line} (physical line "
                    f"{PLAN.bad.bad_physical_line}), got HTTP {status}: "
                    f"{error or _transport_error(response)}"
                )


class LabShape(LoadTestShape):
    """``--shape steady|ramp|spike`` over ``-u`` users, ``-r`` spawn rate and ``-t`` run time."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        assert options is not None
        run_time = float(options.run_time) if options.run_time else None
        return shapes.target(
            options.shape,
            self.get_run_time(),
            int(options.num_users or 1),
            float(options.spawn_rate or 1),
            run_time,
        )
