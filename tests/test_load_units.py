"""The load test's pure parts: payloads, shapes, the audit arithmetic, Locust's stats."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import uuid

import psutil
import pytest

from experiments import audit, loadresults, loadrun, payloads, shapes
from experiments.audit import Ack, AckLog, LedgerRow
from lab.errors import LabError
from lab.fakedata import HEADER

# -- payloads ----------------------------------------------------------------------------------


def test_parse_mix_weights_defaults_and_errors():
    assert payloads.parse_mix("psycopg-text:3, psycopg-binary:1") == (
        ("psycopg-text", 3),
        ("psycopg-binary", 1),
    )
    assert payloads.parse_mix("a") == (("a", 1),)
    assert payloads.parse_mix("a:0,b:2") == (("b", 2),)
    for bad in ("", "a:x", "a:-1", "a,a", ":3", "a:0"):
        with pytest.raises(LabError):
            payloads.parse_mix(bad)


def test_task_weights_mix_in_the_reject_share():
    weights = dict(payloads.task_weights((("a", 3), ("b", 1)), 0.2))
    assert weights["a"] == 3 * weights["b"]
    assert weights[None] / sum(weights.values()) == pytest.approx(0.2, abs=0.01)
    assert None not in dict(payloads.task_weights((("a", 1),), 0))
    with pytest.raises(LabError):
        payloads.task_weights((("a", 1),), 1.0)


def test_good_payload_is_a_multipart_csv_of_the_requested_rows():
    payload = payloads.good(50, encoding="multipart")
    assert payload.rows == 50 and payload.bad_line is None
    assert payload.content_type == f"multipart/form-data; boundary={payloads.BOUNDARY}"
    head, _, rest = payload.body.partition(b"\r\n\r\n")
    assert b'name="file"' in head
    csv_text = rest[: rest.rindex(f"\r\n--{payloads.BOUNDARY}--".encode())].decode()
    records = list(csv.reader(io.StringIO(csv_text, newline="")))
    assert tuple(records[0]) == HEADER
    assert len(records) == 51


def test_bad_payload_names_the_line_of_its_last_record():
    payload = payloads.bad(20, encoding="raw")
    assert payload.content_type == "text/csv" and payload.rows == 0
    records = list(csv.reader(io.StringIO(payload.body.decode(), newline="")))
    # Records, not physical lines: quoted fields may span lines.
    assert payload.bad_line == len(records)
    assert records[-1][HEADER.index(payloads.BAD_COLUMN)] == "not-a-number"
    physical = payload.body.decode().splitlines(keepends=True)
    assert payload.bad_physical_line == len([line for line in physical if line.endswith("\n")])
    assert "not-a-number" in physical[payload.bad_physical_line - 1]
    assert payload.names_bad_line(payload.bad_line) and not payload.names_bad_line(None)


# -- shapes ------------------------------------------------------------------------------------


def test_steady_holds_then_stops_at_run_time():
    assert shapes.target("steady", 0, 4, 2, 30) == (4, 2)
    assert shapes.target("steady", 29.9, 4, 2, 30) == (4, 2)
    assert shapes.target("steady", 30, 4, 2, 30) is None


def test_ramp_climbs_one_user_at_a_time_to_the_peak():
    counts = [shapes.target("ramp", t, 4, 2, 100) for t in range(100)]
    users = [c[0] for c in counts if c]
    assert users[0] == 1 and max(users) == 4
    assert users == sorted(users)
    assert users[int(100 * shapes.RAMP_SHARE) :] == [4] * (100 - int(100 * shapes.RAMP_SHARE))


def test_spike_is_baseline_peak_baseline():
    seen = [shapes.target("spike", t, 8, 1, 100) for t in (0, 39, 40, 59, 60, 99)]
    assert [s[0] for s in seen if s] == [2, 2, 8, 8, 2, 2]
    # The spike arrives at once: spawn rate at least the peak user count.
    assert all(s[1] >= 8 for s in seen if s)


def test_unbounded_shapes_never_stop():
    for shape in shapes.SHAPES:
        assert shapes.target(shape, 10_000, 4, 1, None) is not None
    assert shapes.target("spike", 60 * 10 + 30, 8, 1, None) == (8, 8.0)


# -- audit arithmetic --------------------------------------------------------------------------


def _uid() -> str:
    return str(uuid.uuid4())


def _consistent(n: int = 3, rows: int = 100):
    ids = [_uid() for _ in range(n)]
    acks = tuple(Ack(i, rows, "psycopg-text", 1.0, 2.0) for i in ids)
    ledger = [LedgerRow(i, "succeeded", rows) for i in ids]
    ledger.append(LedgerRow(_uid(), "failed", None))
    return AckLog(acks, rejected=1), ledger, n * rows


def test_consistent_run_passes():
    log, ledger, table_rows = _consistent()
    result = audit.compare(log, ledger, table_rows)
    assert result.passed, result.failures()
    assert (result.acknowledged_rows, result.succeeded_rows, result.failed_uploads) == (300, 300, 1)


def test_rows_leaked_by_a_failed_upload_are_detected():
    log, ledger, table_rows = _consistent()
    result = audit.compare(log, ledger, table_rows + 7)
    assert not result.passed
    names = {c.name for c in result.failures()}
    assert names == {
        "acknowledged rows = rows in the table",
        "rows in the table = rows of succeeded uploads in the ledger",
    }


def test_acknowledged_upload_missing_from_the_table_is_detected():
    log, ledger, table_rows = _consistent()
    result = audit.compare(log, ledger, table_rows - 100)
    assert not result.passed


def test_ledger_disagreements_are_named():
    log, _, _ = _consistent()
    first, second, third = (a.upload_id for a in log.acks)
    ledger = [
        LedgerRow(first, "failed", None),
        LedgerRow(second, "succeeded", 99),
        LedgerRow(_uid(), "succeeded", 101),  # committed, never acknowledged
        LedgerRow(_uid(), "loading", None),
    ]
    result = audit.compare(log, ledger, 200)
    failed = {c.name: c.detail for c in result.failures()}
    detail = failed["every acknowledged upload is succeeded in the ledger with the same rows"]
    assert first in detail and second in detail and third in detail
    assert "every succeeded upload was acknowledged to its client" in failed
    assert "no upload left pending or loading" in failed


def test_duplicate_acknowledgements_are_detected():
    uid = _uid()
    log = AckLog((Ack(uid, 10, "s", 0, 1), Ack(uid, 10, "s", 0, 1)))
    result = audit.compare(log, [LedgerRow(uid, "succeeded", 10)], 20)
    assert "each upload id acknowledged once" in {c.name for c in result.failures()}


def test_read_log_counts_each_kind(tmp_path):
    path = tmp_path / "acks.jsonl"
    lines = [
        {"kind": "ack", "upload_id": "u1", "rows": 5, "strategy": "s", "started": 1, "finished": 2},
        {"kind": "rejected", "status": 400},
        {"kind": "error", "status": 500},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = audit.read_log(path)
    assert (len(log.acks), log.rejected, log.errors) == (1, 1, 1)
    assert audit.read_log(tmp_path / "missing.jsonl") == AckLog(acks=())
    path.write_text("{not json\n")
    with pytest.raises(LabError):
        audit.read_log(path)


# -- results -----------------------------------------------------------------------------------

STATS_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,POST /tables/records/upload [psycopg-text],40,0,120,130.5,80,400,180,4.0,0.0,120,130,\
140,150,200,250,300,390,400,400,400
,Aggregated,50,0,110,125.0,60,400,170,5.0,0.0,110,130,140,150,190,240,290,380,400,400,400
"""


def test_parse_stats_reads_the_aggregate_and_each_name():
    aggregate, named = loadresults.parse_stats(csv.DictReader(io.StringIO(STATS_CSV)))
    assert (aggregate.requests, aggregate.requests_per_s, aggregate.p95_ms) == (50, 5.0, 240.0)
    assert [n.name for n in named] == ["POST /tables/records/upload [psycopg-text]"]
    assert named[0].p99_ms == 390.0


def test_rows_per_second_spans_first_send_to_last_answer():
    assert loadresults.rows_per_second([(100, 10.0, 11.0), (300, 10.5, 12.0)]) == 200.0
    assert loadresults.rows_per_second([]) == 0.0


def test_summary_round_trips_through_load_json(tmp_path):
    run_dir = tmp_path / "load-x"
    run_dir.mkdir()
    _aggregate, named = loadresults.parse_stats(csv.DictReader(io.StringIO(STATS_CSV)))
    summary = loadresults.LoadSummary(
        run_id="load-x",
        created_at="2026-01-01T00:00:00+00:00",
        target="http://127.0.0.1:1",
        shape="steady",
        users=2,
        run_time_s=10,
        rows_per_upload=100,
        strategy_mix="psycopg-text:1",
        requests=50,
        failures=0,
        requests_per_s=5.0,
        rows=4000,
        rows_per_s=400.0,
        p50_ms=110,
        p95_ms=240,
        p99_ms=380,
        rejected=10,
        audit_passed=True,
        server_in_db_p50_ms=20.0,
        server_in_db_p95_ms=None,
        endpoints=named,
        html_report="locust.html",
        stats_csv="locust_stats.csv",
    )
    assert loadresults.load_section(run_dir) is None
    loadresults.write(run_dir, summary, {"config": {}})
    assert loadresults.load_section(run_dir) == summary
    document = json.loads((run_dir / "load.json").read_text())
    assert document["schema"] == loadresults.SCHEMA and document["machine"]["cpu_count"]
    assert loadresults.latest_run(tmp_path) == run_dir
    document["version"] = 99
    (run_dir / "load.json").write_text(json.dumps(document))
    with pytest.raises(LabError):
        loadresults.load_section(run_dir)


# -- run bounds --------------------------------------------------------------------------------


def test_durations_parse_like_locust():
    assert [loadrun.parse_duration(t) for t in ("30", "30s", "2m", "1m30s", "1h")] == [
        30,
        30,
        120,
        90,
        3600,
    ]
    for bad in ("", "30x", "m", "5m3"):
        with pytest.raises(LabError):
            loadrun.parse_duration(bad)


def test_config_is_bounded_and_checks_strategy_names():
    assert loadrun.LoadConfig(strategy_mix=" psycopg-text:2 ").validate().strategy_mix == (
        "psycopg-text:2"
    )
    for bad in (
        loadrun.LoadConfig(users=0),
        loadrun.LoadConfig(users=loadrun.MAX_USERS + 1),
        loadrun.LoadConfig(run_time_s=loadrun.MAX_RUN_TIME_S + 1),
        loadrun.LoadConfig(strategy_mix="no-such-strategy:1"),
    ):
        with pytest.raises(LabError):
            bad.validate()


def test_stop_group_kills_a_process_group_that_ignores_sigint():
    # A shell that ignores SIGINT, with a grandchild: both must be gone afterwards.
    proc = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; sleep 300 & echo $!; wait'],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    loadrun.stop_group(proc, grace=0.5)
    assert proc.returncode is not None
    # SIGKILL is delivered at once but the kernel reaps the grandchild asynchronously:
    # give it a moment (bounded) before judging.
    with contextlib.suppress(psutil.NoSuchProcess):
        _, alive = psutil.wait_procs([psutil.Process(grandchild)], timeout=5)
        assert not alive or alive[0].status() == psutil.STATUS_ZOMBIE


def test_headless_command_is_bounded_and_loopback(tmp_path):
    command = loadrun.locust_command(
        loadrun.LoadConfig(run_time_s=12),
        host="http://127.0.0.1:9",
        run_dir=tmp_path,
        ack_file=tmp_path / "acks.jsonl",
        ca_file=None,
    )
    assert command[command.index("-t") + 1] == "12s"
    assert "--headless" in command and "--stop-timeout" in command
    web = loadrun.locust_command(
        loadrun.LoadConfig(),
        host="http://127.0.0.1:9",
        run_dir=tmp_path,
        ack_file=tmp_path / "acks.jsonl",
        ca_file=None,
        web_port=8123,
    )
    assert web[web.index("--web-host") + 1] == "127.0.0.1" and "--headless" not in web
