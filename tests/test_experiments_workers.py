"""Worker RSS around an upload, read from /proc for real, and the streamed multipart body."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import psutil
import pytest
import requests
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import ValueTarget

from experiments import upload as upload_mod
from experiments.workers import RssWatch, worker_pids


def _hold(ready, go, done, grow_mb: int):  # type: ignore[no-untyped-def]
    """Wait for ``go``, touch ``grow_mb`` and free it, say ``ready``, then stay alive until
    ``done`` (an exited child has no /proc status to read its peak from)."""
    ready.set()
    go.wait(30)
    block = bytearray(grow_mb * 1024 * 1024)  # touched: resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    del block
    ready.set()
    done.wait(30)


def test_rss_watch_sees_a_child_peak_after_it_is_freed():
    ctx = multiprocessing.get_context("fork")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(ready, go, done, 40))
    child.start()
    try:
        ready.wait(10)
        ready.clear()
        assert child.pid in worker_pids(os.getpid())
        watch = RssWatch(os.getpid())
        go.set()
        ready.wait(10)
        growth = watch.growth_mb()
        assert growth is not None and 35 <= growth <= 60
    finally:
        go.set()
        done.set()
        child.join(10)


def test_rss_watch_without_a_server_is_unknown():
    assert RssWatch(None).growth_mb() is None


def test_big_files_stream_as_the_same_multipart_body(tmp_path: Path, monkeypatch):
    file = tmp_path / "big.csv"
    content = b"id,name\n" + b"".join(b"%d,x\n" % i for i in range(200_000))
    file.write_bytes(content)
    monkeypatch.setattr(upload_mod, "IN_MEMORY_BYTES", 1024)
    body = upload_mod.multipart_body(file)
    assert body.file == file and body.data == b""
    stream = body.payload()
    assert not isinstance(stream, bytes)
    raw = b"".join(iter(lambda: stream.read(8192), b""))
    assert len(raw) == len(stream)
    # A request that fails leaves no file open: the client closes the stream.
    with pytest.raises(requests.ConnectionError):
        upload_mod.upload(requests.Session(), "http://127.0.0.1:9", "records", "x", body)
    assert str(file) not in {f.path for f in psutil.Process().open_files()}
    target = ValueTarget()
    parser = StreamingFormDataParser({"Content-Type": body.content_type})
    parser.register("file", target)
    parser.data_received(raw)
    assert target.value == content
