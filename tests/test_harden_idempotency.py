"""Idempotency-Key with real gunicorn: a retried upload replays its first result instead of
loading again, racing duplicates load once, a different body under a used key is 409."""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import strategies
from lab.fakedata import HEADER, csv_bytes
from service.stack import running_stack
from tests.harden_http import SlowUpload, audit, count, multipart, upload


@pytest.fixture(scope="module")
def stack(db_url, tmp_path_factory):
    with running_stack(db_url, workers=2, nginx=False, home=tmp_path_factory.mktemp("h")) as s:
        yield s


@pytest.fixture
def clean(conn):
    conn.execute("TRUNCATE ingest.records, ingest.records_pk, lab.uploads")
    return conn


def _rows_with_key(conn, key: str) -> list[tuple[str, int | None]]:
    return [
        (str(r[0]), r[1])
        for r in conn.execute(
            "SELECT status, rows FROM lab.uploads WHERE idempotency_key = %s ORDER BY created_at",
            (key,),
        ).fetchall()
    ]


@pytest.mark.parametrize("strategy", strategies.names())
def test_retry_replays_the_first_result_without_loading_again(stack, clean, strategy):
    key = str(uuid.uuid4())
    body = csv_bytes(2000, seed=1)
    path = f"/upload?strategy={strategy}"
    first = upload(stack.http_url, body, key=key, path=path)
    assert first.status == 201, first.body
    assert "idempotent-replayed" not in first.headers
    again = upload(stack.http_url, body, key=key, path=path)
    assert again.status == 201, again.body
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert count(clean) == 2000
    assert _rows_with_key(clean, key) == [("succeeded", 2000)]
    audit(clean)


def test_replay_compares_the_csv_content_not_the_envelope(stack, clean):
    """The same CSV as multipart (any boundary) or raw is the same upload."""
    key = str(uuid.uuid4())
    body = csv_bytes(300, seed=2)
    data, content_type = multipart(body, boundary="first-boundary")
    first = upload(stack.http_url, data, key=key, headers={"Content-Type": content_type})
    assert first.status == 201, first.body
    data, content_type = multipart(body, boundary="another-one")
    second = upload(stack.http_url, data, key=key, headers={"Content-Type": content_type})
    third = upload(stack.http_url, body, key=key)
    for answer in (second, third):
        assert answer.status == 201 and answer.headers["idempotent-replayed"] == "true"
        assert answer.json()["upload_id"] == first.json()["upload_id"]
    assert count(clean) == 300


def test_different_body_or_table_under_a_used_key_is_409(stack, clean):
    key = str(uuid.uuid4())
    assert upload(stack.http_url, csv_bytes(100, seed=3), key=key).status == 201
    other = upload(stack.http_url, csv_bytes(100, seed=4), key=key)
    assert other.status == 409 and other.code == "idempotency_mismatch"
    elsewhere = upload(
        stack.http_url, csv_bytes(100, seed=3), key=key, path="/tables/records_pk/upload"
    )
    assert elsewhere.status == 409 and elsewhere.code == "idempotency_mismatch"
    assert count(clean) == 100 and count(clean, "records_pk") == 0
    assert _rows_with_key(clean, key) == [("succeeded", 100)]


def test_identical_requests_racing_load_once(stack, clean):
    key = str(uuid.uuid4())
    body = csv_bytes(30_000, seed=5)
    racers = 6
    start = threading.Barrier(racers)

    def post(_: int):
        start.wait(timeout=30)
        return upload(stack.http_url, body, key=key)

    with ThreadPoolExecutor(max_workers=racers) as pool:
        answers = list(pool.map(post, range(racers)))
    assert [a.status for a in answers] == [201] * racers, [a.body[:200] for a in answers]
    assert len({a.json()["upload_id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == racers - 1
    assert count(clean) == 30_000
    assert _rows_with_key(clean, key) == [("succeeded", 30_000)]
    audit(clean)


def test_a_repeat_waits_for_the_attempt_in_flight_then_replays(stack, clean):
    key = str(uuid.uuid4())
    body = csv_bytes(5000, seed=6)
    first = SlowUpload(stack.http_url, body, headers={"Idempotency-Key": key})
    try:
        first.send(len(body) // 2)
        deadline = time.monotonic() + 30
        while _rows_with_key(clean, key) != [("loading", None)]:
            assert time.monotonic() < deadline, "the first attempt never started"
            time.sleep(0.05)
        with ThreadPoolExecutor(max_workers=1) as pool:
            repeat = pool.submit(upload, stack.http_url, body, key=key)
            time.sleep(0.5)
            assert not repeat.done()  # waiting for the first attempt, not loading its own
            original = first.finish()
            replayed = repeat.result(timeout=60)
    finally:
        first.close()
    assert original.status == 201, original.body
    assert replayed.status == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["upload_id"] == original.json()["upload_id"]
    assert count(clean) == 5000


def test_a_failed_attempt_gives_its_key_back_for_the_retry(stack, clean):
    key = str(uuid.uuid4())
    good = csv_bytes(400, seed=7, quote_share=0)
    lines = good.decode().splitlines(keepends=True)
    fields = lines[10].split(",")
    fields[HEADER.index("quantity")] = "many"
    lines[10] = ",".join(fields)
    bad = "".join(lines).encode()
    failed = upload(stack.http_url, bad, key=key)
    assert failed.status == 422 and failed.code == "bad_csv"
    retried = upload(stack.http_url, good, key=key)
    assert retried.status == 201, retried.body
    assert "idempotent-replayed" not in retried.headers
    assert upload(stack.http_url, good, key=key).headers["idempotent-replayed"] == "true"
    assert count(clean) == 400
    assert _rows_with_key(clean, key) == [("failed", None), ("succeeded", 400)]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é-non-ascii"])
def test_malformed_key_is_400(stack, clean, key):
    answer = upload(stack.http_url, csv_bytes(5), headers={"Idempotency-Key": key})
    assert answer.status == 400 and answer.code == "bad_idempotency_key"
    assert count(clean) == 0


def test_a_repeat_waiting_on_an_attempt_that_fails_loads_its_own_copy(stack, clean):
    """The first attempt's client vanishes mid-body while a repeat waits: the key comes
    free and the repeat loads the body it kept, once."""
    key = str(uuid.uuid4())
    body = csv_bytes(5000, seed=8)
    first = SlowUpload(stack.http_url, body, headers={"Idempotency-Key": key})
    try:
        first.send(len(body) // 2)
        deadline = time.monotonic() + 30
        while _rows_with_key(clean, key) != [("loading", None)]:
            assert time.monotonic() < deadline, "the first attempt never started"
            time.sleep(0.05)
        with ThreadPoolExecutor(max_workers=1) as pool:
            repeat = pool.submit(upload, stack.http_url, body, key=key)
            time.sleep(0.5)
            assert not repeat.done()
            first.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            first.close()  # reset: the first attempt fails
            answer = repeat.result(timeout=60)
    finally:
        first.close()
    assert answer.status == 201, answer.body
    assert "idempotent-replayed" not in answer.headers
    assert count(clean) == 5000
    assert _rows_with_key(clean, key) == [("failed", None), ("succeeded", 5000)]
    audit(clean)
