import io

from lab.fakedata import csv_bytes
from strategies import get


def test_psycopg_text_loads_generated_rows(db, conn):
    conn.execute("TRUNCATE ingest.records")
    result = get("psycopg-text").load(io.BytesIO(csv_bytes(500, seed=3)), "records", db)
    assert result.rows == 500
    assert conn.execute("SELECT count(*) FROM ingest.records").fetchone()[0] == 500
