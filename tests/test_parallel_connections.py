"""The parallel strategies on the service's pool: N connections per load, taken at once."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest

import strategies
from lab import fakedata
from service.db import create_pool


@pytest.mark.parametrize("name", ["parallel-text", "parallel-freeze", "parallel-binary"])
def test_concurrent_parallel_loads_share_a_small_pool(db_url, conn, name):
    """Four loads of two connections each on a pool of two: each takes its pair at once,
    so none holds one connection while waiting for a second that another load holds."""
    conn.execute("TRUNCATE ingest.records")
    pool = create_pool(db_url, 2, 20.0, 0)
    pool._pool.open(wait=True)  # type: ignore[attr-defined]
    try:
        strategy = strategies.REGISTRY[name](workers=2)  # type: ignore[call-arg]
        body = fakedata.csv_bytes(3000, seed=6)

        def one(_: int) -> int:
            return strategy.load(io.BytesIO(body), "records", pool).rows

        with ThreadPoolExecutor(4) as threads:
            assert list(threads.map(one, range(4))) == [3000] * 4
    finally:
        pool.close()
    counted = conn.execute("SELECT count(*) FROM ingest.records").fetchone()
    conn.execute("TRUNCATE ingest.records")
    assert counted == (12000,)


@pytest.mark.parametrize("name", ["parallel-text", "parallel-freeze"])
def test_a_parallel_load_wider_than_the_service_pool_loads(db_url, conn, monkeypatch, name):
    """LAB_PARALLEL_WORKERS above LAB_POOL_SIZE (as the default, one per core, is on a
    machine of more than four cores): the load runs as many slices as the pool can hand
    out at once, instead of waiting for the pool's timeout and answering 503."""
    from lab.config import Settings
    from service import create_app
    from service.db import close_db

    conn.execute("TRUNCATE ingest.records")
    monkeypatch.setenv("LAB_PARALLEL_WORKERS", "3")
    app = create_app({"SETTINGS": Settings(database_url=db_url, pool_size=2), "TESTING": True})
    try:
        answer = app.test_client().post(
            f"/upload?strategy={name}",
            data=fakedata.csv_bytes(2000, seed=8),
            headers={"Content-Type": "text/csv"},
        )
        assert answer.status_code == 201, answer.get_json()
        assert answer.get_json()["rows"] == 2000
    finally:
        close_db(app)
    counted = conn.execute("SELECT count(*) FROM ingest.records").fetchone()
    conn.execute("TRUNCATE ingest.records")
    assert counted == (2000,)
