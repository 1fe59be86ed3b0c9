"""Peers: well-known ways to load the same CSV file, measured like our strategies.

* ``psql-copy``     — ``psql`` running ``\\copy … FROM file (FORMAT csv, HEADER)``.
* ``pandas-to-sql`` — ``pandas.read_csv`` then ``DataFrame.to_sql(method="multi")``
                      through SQLAlchemy + psycopg.
* ``adbc-ingest``   — ``pyarrow.csv.read_csv`` then ADBC ``adbc_ingest`` (binary COPY).

Each runs in one transaction and reads the server clock (``clock_timestamp()``) on its own
connection just before and just after the load statement(s), before COMMIT, exactly as
``strategies.base.Timings.in_db_ms`` is defined, so in-DB ratios compare like with like.
``wall_ms`` is the client's clock around the whole operation (process start or connection,
parsing, load, commit); ``parse_ms`` is client-side parsing (0 for psql: the server parses).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.fakedata import HEADER

_CLOCK_SQL = "SELECT extract(epoch FROM clock_timestamp()) * 1000"
# pandas ``to_sql(method="multi")`` rows per INSERT. On 10k rows (2 shared cores) 100 / 500 /
# 1,000 / 5,000 took 2.5 / 2.2 / 2.7 / 4.2 s: SQLAlchemy's cost per statement grows with its
# size. 500 rows x 10 columns = 5,000 parameters, far under PostgreSQL's 65,535 limit.
PANDAS_CHUNKSIZE = 500


@dataclass(frozen=True)
class PeerResult:
    rows: int
    parse_ms: float
    in_db_ms: float
    commit_ms: float
    wall_ms: float


@dataclass(frozen=True)
class Peer:
    name: str
    description: str
    run: Callable[[Path, str, str], PeerResult]


def psql_binary() -> str:
    """psql next to the embedded server (same major version), else the one on PATH."""
    from lab.cluster import _pg_bin_dir

    try:
        bundled = _pg_bin_dir() / "psql"
    except LabError:
        bundled = None
    if bundled is not None and bundled.exists():
        return str(bundled)
    found = shutil.which("psql")
    if found is None:
        raise LabError("psql not found (install postgresql-client)", code="no_psql")
    return found


def _psql_copy(file: Path, table: str, url: str) -> PeerResult:
    quoted = str(file).replace("'", "''")
    columns = ", ".join(HEADER)
    script = (
        "BEGIN;\n"
        f"{_CLOCK_SQL};\n"
        f"\\copy ingest.{table} ({columns}) FROM '{quoted}' WITH (FORMAT csv, HEADER true)\n"
        f"{_CLOCK_SQL};\n"
        "\\timing on\n"
        "COMMIT;\n"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [psql_binary(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"psql exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    clocks = [float(x) for x in re.findall(r"^(\d+\.\d+)$", proc.stdout, re.M)]
    copied = re.search(r"^COPY (\d+)$", proc.stdout, re.M)
    timing = re.search(r"^Time: ([\d.]+) ms", proc.stdout, re.M)
    if len(clocks) != 2 or copied is None or timing is None:
        raise RuntimeError(f"unexpected psql output: {proc.stdout[-300:]!r}")
    return PeerResult(
        rows=int(copied[1]),
        parse_ms=0.0,
        in_db_ms=clocks[1] - clocks[0],
        commit_ms=float(timing[1]),
        wall_ms=wall,
    )


def _pandas_to_sql(file: Path, table: str, url: str) -> PeerResult:
    import pandas as pd
    import psycopg
    import sqlalchemy as sa

    started = time.perf_counter()
    frame = pd.read_csv(file)
    parse_ms = (time.perf_counter() - started) * 1000
    # Without explicit types pandas binds uuid and timestamptz values as VARCHAR.
    dtype: dict[str, Any] = {
        "uuid": sa.Uuid(as_uuid=False),
        "created_at": sa.DateTime(timezone=True),
        "amount": sa.Numeric(12, 2),
        "quantity": sa.Integer(),
    }
    engine = sa.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=sa.NullPool
    )
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            t0 = float(conn.exec_driver_sql(_CLOCK_SQL).scalar_one())
            frame.to_sql(
                table,
                conn,
                schema="ingest",
                if_exists="append",
                index=False,
                method="multi",
                chunksize=PANDAS_CHUNKSIZE,
                dtype=dtype,
            )
            t1 = float(conn.exec_driver_sql(_CLOCK_SQL).scalar_one())
            commit_start = time.perf_counter()
            trans.commit()
            commit_ms = (time.perf_counter() - commit_start) * 1000
    finally:
        engine.dispose()
    return PeerResult(
        rows=len(frame),
        parse_ms=parse_ms,
        in_db_ms=t1 - t0,
        commit_ms=commit_ms,
        wall_ms=(time.perf_counter() - started) * 1000,
    )


def arrow_table(file: Path) -> Any:
    """The CSV as an Arrow table whose types COPY BINARY accepts for ``ingest.records``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions(
        column_types={"amount": pa.decimal128(12, 2), "quantity": pa.int32()},
        # PostgreSQL's CSV rule: unquoted empty = NULL, quoted empty = empty string.
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    table = pcsv.read_csv(file, convert_options=options)
    # uuid text -> 16-byte arrow.uuid values (ADBC writes them as PostgreSQL uuid).
    text = table.column("uuid").combine_chunks()
    raw = bytes.fromhex("".join(pc.replace_substring(text, "-", "").to_pylist()))
    storage = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(text), [None, pa.py_buffer(raw)]
    )
    index = table.schema.get_field_index("uuid")
    return table.set_column(index, "uuid", pa.ExtensionArray.from_storage(pa.uuid(), storage))


def _adbc_ingest(file: Path, table: str, url: str) -> PeerResult:
    import adbc_driver_postgresql.dbapi as dbapi

    started = time.perf_counter()
    data = arrow_table(file)
    parse_ms = (time.perf_counter() - started) * 1000
    with dbapi.connect(url) as conn, conn.cursor() as cur:
        cur.execute(_CLOCK_SQL)
        t0 = float(cur.fetchone()[0])
        rows = cur.adbc_ingest(table, data, mode="append", db_schema_name="ingest")
        cur.execute(_CLOCK_SQL)
        t1 = float(cur.fetchone()[0])
        commit_start = time.perf_counter()
        conn.commit()
        commit_ms = (time.perf_counter() - commit_start) * 1000
    return PeerResult(
        rows=int(rows) if rows is not None and rows >= 0 else data.num_rows,
        parse_ms=parse_ms,
        in_db_ms=t1 - t0,
        commit_ms=commit_ms,
        wall_ms=(time.perf_counter() - started) * 1000,
    )


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("psql-copy", "psql \\copy FROM file (FORMAT csv): the server parses", _psql_copy),
        Peer(
            "pandas-to-sql",
            f"pandas read_csv + to_sql(method='multi', chunksize={PANDAS_CHUNKSIZE})",
            _pandas_to_sql,
        ),
        Peer("adbc-ingest", "pyarrow read_csv + ADBC adbc_ingest (binary COPY)", _adbc_ingest),
    )
}


def names() -> list[str]:
    return list(PEERS)


def get(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise LabError(
            f"unknown peer {name!r}; valid peers: {', '.join(PEERS)}", code="unknown_peer"
        ) from None
