"""Where the server's time goes during a load: ``perf record -a`` around it, ``perf report``
read back, and the postgres symbols grouped by what they do.

The parsing and grouping are pure (``parse_report``, ``classify``); ``probe``,
``recording`` and ``report_text`` run perf. perf is optional: when it is missing or not
allowed to record, ``probe`` says why and the floor goes on without a profile. perf never
outlives the lab: it records for at most ``MAX_RECORD_S`` (``-- sleep``), is stopped by
SIGINT once the loads are done, and dies with the lab (``die_with_parent``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.procs import die_with_parent

#: Sampling frequency: 999 Hz on each core gives ~100 samples per 100 ms load and core,
#: enough for shares of a few percent over 3 loads, and avoids lockstep with 1 kHz timers.
FREQUENCY_HZ = 999
#: Upper bound of one recording (the loads of the profile take 1-3 s on 2 cores).
MAX_RECORD_S = 120
#: Bound on ``perf report`` (symbol resolution of the postgres binary and the kernel).
REPORT_TIMEOUT_S = 180
#: The process name of PostgreSQL's processes (backends, walwriter, checkpointer ...).
COMM = "postgres"

#: The categories, in the order the report shows them.
CATEGORIES = (
    "protocol",
    "type receive",
    "tuple forming",
    "heap and buffers",
    "checksums",
    "memory",
    "memcpy",
    "commit-time sync",
    "kernel",
    "other",
)

#: What each category means, for the report.
CATEGORY_NOTES = {
    "protocol": "reading COPY data messages and binary fields",
    "type receive": "binary receive functions: UTF-8 checks, numeric rounding, timestamps, uuid",
    "tuple forming": "building heap tuples from the received values",
    "heap and buffers": "placing tuples on pages, extending the table, buffer bookkeeping",
    "checksums": "data-page checksums (enabled by initdb since PostgreSQL 18)",
    "memory": "palloc/pfree and memory contexts",
    "memcpy": "libc memcpy/memmove/memset: copying field data into messages, tuples and pages",
    "commit-time sync": "writing and syncing the new table's pages at commit (wal_level=minimal)",
    "kernel": "kernel time of postgres processes: socket reads, page-cache writes, fsync",
    "other": "every other symbol",
}

#: Symbol -> category: the postgres functions seen in perf profiles of binary COPY loads
#: (PostgreSQL 18, 100k rows x 10 columns), by the job they do.
SYMBOLS: dict[str, str] = {
    **dict.fromkeys(
        (
            "CopyFromBinaryOneRow",
            "CopyReadBinaryData",
            "CopyReadBinaryAttribute",
            "CopyGetData",
            "CopyLoadRawBuf",
            "CopyLoadInputBuf",
            "NextCopyFrom",
            "NextCopyFromRawFields",
            "CopyFrom",
            "pq_getmsgbytes",
            "pq_getmsgint",
            "pq_getmsgint64",
            "pq_getmsgfloat8",
            "pq_getmsgbyte",
            "pq_getmsgend",
            "pq_copymsgbytes",
            "pq_getbytes",
            "pq_getmessage",
            "pq_recvbuf",
            "pq_startmsgread",
            "secure_read",
            "enlargeStringInfo",
            "resetStringInfo",
            "appendBinaryStringInfo",
            "secure_raw_read",
            "__libc_recv",
            "ReceiveCopyBinaryHeader",
        ),
        "protocol",
    ),
    **dict.fromkeys(
        (
            "pg_utf8_verifystr",
            "pg_verify_mbstr",
            "pg_verify_mbstr_len",
            "pg_verifymbstr",
            "pg_client_to_server",
            "pg_any_to_server",
            "textrecv",
            "varcharrecv",
            "bpcharrecv",
            "numeric_recv",
            "round_var",
            "trunc_var",
            "apply_typmod",
            "make_result",
            "make_result_opt_error",
            "alloc_var",
            "free_var",
            "strip_var",
            "timestamptz_recv",
            "timestamp_recv",
            "timestamp2tm",
            "timesub",
            "localsub",
            "pg_localtime",
            "j2date",
            "date2j",
            "tm2timestamp",
            "dt2time",
            "AdjustTimestampForTypmod",
            "uuid_recv",
            "int2recv",
            "int4recv",
            "int8recv",
            "float4recv",
            "float8recv",
            "boolrecv",
            "date_recv",
            "ReceiveFunctionCall",
        ),
        "type receive",
    ),
    **dict.fromkeys(
        (
            "heap_fill_tuple",
            "fill_val",
            "heap_compute_data_size",
            "heap_form_tuple",
            "heap_prepare_insert",
            "ExecCopySlot",
            "ExecStoreVirtualTuple",
            "ExecClearTuple",
            "ExecFetchSlotHeapTuple",
            "ExecMaterializeSlot",
            "tts_virtual_clear",
            "tts_virtual_materialize",
            "tts_virtual_copy_heap_tuple",
            "tts_buffer_heap_store_tuple",
            "tts_buffer_heap_clear",
            "tts_buffer_heap_materialize",
            "tts_heap_clear",
            "tts_heap_materialize",
            "tts_heap_copy_heap_tuple",
            "slot_getallattrs",
        ),
        "tuple forming",
    ),
    **dict.fromkeys(
        (
            "heap_multi_insert",
            "heapam_multi_insert",
            "table_multi_insert",
            "CopyMultiInsertBufferFlush",
            "CopyMultiInsertInfoFlush",
            "CopyMultiInsertInfoStore",
            "RelationPutHeapTuple",
            "RelationGetBufferForTuple",
            "RelationAddBlocks",
            "ExtendBufferedRelBy",
            "ExtendBufferedRelCommon",
            "ExtendBufferedRelShared",
            "ExtendBufferedRelLocal",
            "MarkBufferDirty",
            "PageAddItemExtended",
            "PageInit",
            "PageGetHeapFreeSpace",
            "ReadBuffer_common",
            "StartReadBuffer",
            "ReadBufferExtended",
            "LockBuffer",
            "UnlockReleaseBuffer",
            "ReleaseBuffer",
            "PinBuffer",
            "PinBuffer_Locked",
            "UnpinBuffer",
            "UnpinBufferNoOwner",
            "BufferAlloc",
            "GetVictimBuffer",
            "StrategyGetBuffer",
            "InvalidateVictimBuffer",
            "BufTableLookup",
            "BufTableInsert",
            "BufTableDelete",
            "LWLockAcquire",
            "LWLockRelease",
            "LWLockAttemptLock",
            "LockBufHdr",
            "ResourceOwnerAddToHash",
            "ResourceOwnerForget",
            "ResourceOwnerRemember",
            "ResourceOwnerEnlarge",
            "visibilitymap_pin",
            "visibilitymap_set",
            "visibilitymap_set_vmbits",
            "smgrextend",
            "smgrzeroextend",
            "mdextend",
            "mdzeroextend",
            "FileWrite",
            "FileZero",
            "FileFallocate",
            "pg_pwrite",
            "pg_pwritev",
            "pg_pwrite_zeros",
        ),
        "heap and buffers",
    ),
    **dict.fromkeys(
        (
            "pg_checksum_page",
            "pg_checksum_block",
            "PageSetChecksumCopy",
            "PageSetChecksumInplace",
        ),
        "checksums",
    ),
    **dict.fromkeys(
        (
            "malloc",
            "free",
            "palloc",
            "palloc0",
            "palloc_extended",
            "pfree",
            "repalloc",
            "MemoryContextReset",
            "MemoryContextAlloc",
            "MemoryContextAllocZero",
            "MemoryContextAllocExtended",
            "MemoryContextResetOnly",
            "MemoryContextDelete",
        ),
        "memory",
    ),
    **dict.fromkeys(
        (
            "FlushRelationsAllBuffers",
            "DropRelationsAllBuffers",
            "FlushRelationBuffers",
            "FlushBuffer",
            "FlushUnlockedBuffer",
            "smgrdosyncall",
            "smgrimmedsync",
            "smgrwrite",
            "smgrwritev",
            "mdwritev",
            "mdimmedsync",
            "mdsyncfiletag",
            "register_dirty_segment",
            "pg_fsync",
            "pg_fsync_no_writethrough",
            "smgrDoPendingSyncs",
            "RelationPreserveStorage",
        ),
        "commit-time sync",
    ),
}

#: Families named by prefix (checked after ``SYMBOLS``).
PREFIXES: tuple[tuple[str, str], ...] = (
    ("AllocSet", "memory"),
    ("__memmove", "memcpy"),
    ("__memcpy", "memcpy"),
    ("__memset", "memcpy"),
    ("memcpy", "memcpy"),
    ("memmove", "memcpy"),
    ("memset", "memcpy"),
    ("GenerationAlloc", "memory"),
    ("SlabAlloc", "memory"),
    ("pq_getmsg", "protocol"),
    ("CopyFrom", "protocol"),
    ("numeric_", "type receive"),
    ("tts_", "tuple forming"),
)

_LINE = re.compile(
    r"^\s*(?P<pct>\d+(?:\.\d+)?)%\s+(?:(?P<n>\d+)\s+)?\[(?P<space>[^\]]+)\]\s+(?P<symbol>\S+)"
)
_SAMPLES = re.compile(r"^# Samples:\s+(?P<n>\d+(?:\.\d+)?)(?P<unit>[KMG]?)\s", re.M)


@dataclass(frozen=True)
class Entry:
    """One line of ``perf report -n --sort symbol``: share (%), kernel symbol or not, name,
    and its sample count (0 when the report has no ``-n`` column)."""

    percent: float
    kernel: bool
    symbol: str
    samples: int = 0


@dataclass(frozen=True)
class Share:
    category: str
    percent: float


@dataclass(frozen=True)
class Profile:
    """The profile of a floor run, or why none was taken (``taken`` False, ``reason``)."""

    taken: bool
    reason: str
    loads: int = 0
    samples: int = 0
    shares: tuple[Share, ...] = ()
    #: The biggest symbols: (symbol, category, percent).
    top: tuple[tuple[str, str, float], ...] = ()
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls(
            taken=bool(data["taken"]),
            reason=str(data.get("reason", "")),
            loads=int(data.get("loads", 0)),
            samples=int(data.get("samples", 0)),
            shares=tuple(Share(str(s["category"]), float(s["percent"])) for s in data["shares"]),
            top=tuple((str(s), str(c), float(p)) for s, c, p in data.get("top", [])),
            command=str(data.get("command", "")),
        )


def parse_report(text: str) -> list[Entry]:
    """The symbol lines of ``perf report --stdio --sort symbol`` output, in its order."""
    entries = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if match := _LINE.match(line):
            entries.append(
                Entry(
                    float(match["pct"]),
                    match["space"].strip() == "k",
                    match["symbol"],
                    int(match["n"] or 0),
                )
            )
    return entries


def sample_count(text: str) -> int:
    """The ``# Samples: 12K of event …`` header as a number (perf rounds to K/M)."""
    match = _SAMPLES.search(text)
    if match is None:
        return 0
    scale = {"": 1, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}[match["unit"]]
    return round(float(match["n"]) * scale)


def category(entry: Entry) -> str:
    """The category of one symbol: exact name, then prefix, then kernel, else other.

    Compiler clones (``fill_val.constprop.0``, ``round_var.isra.0``) count as the function.
    """
    name = entry.symbol.split(".", 1)[0]
    if name in SYMBOLS:
        return SYMBOLS[name]
    for prefix, found in PREFIXES:
        if name.startswith(prefix):
            return found
    return "kernel" if entry.kernel else "other"


def classify(entries: Iterable[Entry]) -> tuple[Share, ...]:
    """Shares per category (%, over the given entries, every category listed)."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for entry in entries:
        totals[category(entry)] += entry.percent
    whole = sum(totals.values())
    scale = 100.0 / whole if whole > 0 else 0.0
    return tuple(Share(name, round(totals[name] * scale, 2)) for name in CATEGORIES)


def top_symbols(entries: Iterable[Entry], n: int = 15) -> tuple[tuple[str, str, float], ...]:
    ordered = sorted(entries, key=lambda e: e.percent, reverse=True)[:n]
    return tuple((e.symbol, category(e), e.percent) for e in ordered)


# -- running perf -----------------------------------------------------------------------------


def _record_command(data: Path, seconds: int) -> list[str]:
    binary = shutil.which("perf") or "perf"
    record = [binary, "record", "-a", "-F", str(FREQUENCY_HZ), "-o", str(data)]
    return [*record, "--", "sleep", str(seconds)]


def report_command(data: Path, pids: Iterable[int]) -> list[str]:
    """``perf report`` of the given backends only: ``-a`` sees every process of the
    machine, other PostgreSQL servers' included."""
    binary = shutil.which("perf") or "perf"
    return [
        binary,
        "report",
        "-i",
        str(data),
        "--stdio",
        "--no-children",
        "--show-nr-samples",
        "--comms",
        COMM,
        "--pid",
        ",".join(str(p) for p in sorted(pids)),
        "--sort",
        "symbol",
        "--percentage",
        "relative",
    ]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def probe() -> str | None:
    """None when ``perf record -a`` works here, else why not (shown in the report)."""
    if shutil.which("perf") is None:
        return "perf is not installed (no perf binary on PATH)"
    with tempfile.TemporaryDirectory(prefix="lab-perf-probe-") as tmp:
        data = Path(tmp) / "probe.data"
        command = _record_command(data, 0)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=30, preexec_fn=die_with_parent
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"perf record could not run: {type(exc).__name__}: {exc}"[:300]
        if done.returncode != 0 or not data.exists():
            why = _last_line(done.stderr) or f"exit status {done.returncode}"
            return f"perf record -a is not allowed here: {why}"
    return None


#: Seconds to wait for perf to confirm that it records (it starts with events disabled).
READY_TIMEOUT_S = 30


def _enable(process: subprocess.Popen[bytes], ctl: int, ack: int) -> None:
    """Tell perf to start sampling and wait for its ``ack``: no load runs unrecorded while
    perf is still setting up (on 2 cores that took longer than a small load)."""
    os.write(ctl, b"enable\n")
    ready, _, _ = select.select([ack], [], [], READY_TIMEOUT_S)
    answer = os.read(ack, 64) if ready else b""
    if not answer.startswith(b"ack"):
        state = "exited" if process.poll() is not None else "did not answer"
        raise RuntimeError(f"perf record {state} instead of starting to record")


@contextlib.contextmanager
def recording(data: Path) -> Iterator[None]:
    """``perf record -a`` into ``data`` while the block runs; stopped (SIGINT) at its end."""
    ctl_read, ctl_write = os.pipe()
    ack_read, ack_write = os.pipe()
    command = _record_command(data, MAX_RECORD_S)
    command[2:2] = ["-D", "-1", "--control", f"fd:{ctl_read},{ack_write}"]
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(ctl_read, ack_write),
            preexec_fn=die_with_parent,
        )
    finally:
        os.close(ctl_read)
        os.close(ack_write)
    try:
        _enable(process, ctl_write, ack_read)
        yield
    finally:
        # SIGINT while the control pipe is still open: perf 6.1 fails to write its data
        # ("pollfd index mismatch") when the pipe closes first.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        finally:
            os.close(ctl_write)
            os.close(ack_read)
    if not data.exists():
        raise RuntimeError(f"perf record wrote no data: {_last_line(err.decode(errors='replace'))}")


def describe() -> str:
    """The two perf commands, for the report."""
    return (
        f"perf record -a -F {FREQUENCY_HZ}; perf report --stdio --no-children --show-nr-samples "
        f"--comms {COMM} --pid <the profiled loads' backends> --sort symbol --percentage relative"
    )


def report_text(data: Path, pids: Iterable[int]) -> str:
    """``perf report`` of ``data``: the backends ``pids`` only, shares relative to them."""
    done = subprocess.run(
        report_command(data, pids),
        capture_output=True,
        text=True,
        timeout=REPORT_TIMEOUT_S,
        preexec_fn=die_with_parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"perf report failed: {_last_line(done.stderr)}")
    return done.stdout


def from_report(text: str, loads: int) -> Profile:
    """The ``Profile`` of one ``perf report`` output."""
    entries = parse_report(text)
    if not entries:
        return Profile(False, "perf recorded no sample of the loads' backends", loads=loads)
    return Profile(
        taken=True,
        reason="",
        loads=loads,
        samples=sum(e.samples for e in entries) or sample_count(text),
        shares=classify(entries),
        top=top_symbols(entries),
        command=describe(),
    )
