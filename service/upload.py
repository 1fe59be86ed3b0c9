"""The upload endpoints: a CSV body in, an atomic load and a ledger entry out."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from flask import Blueprint, Response, current_app, jsonify, request, url_for

import strategies
from lab.config import Settings
from lab.errors import LabError
from service import auth, intake, ledger, maintenance
from service.db import get_db, get_lease
from service.errors import public_error
from strategies import catalog
from strategies.base import LoadResult, Strategy

bp = Blueprint("upload", __name__)
log = logging.getLogger("service.upload")

DEFAULT_TABLE = "records"
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255
#: How long a request repeating a key waits for the attempt holding it to finish, before
#: answering 409 ``idempotency_in_progress``. A 100k-row load takes well under a second;
#: this covers large uploads from fast clients without tying a thread up indefinitely.
IDEMPOTENCY_WAIT_S = 60.0
_POLL_S = 0.1


@bp.post("/upload")
def upload_records() -> tuple[Response, int]:
    return _upload(DEFAULT_TABLE)


@bp.post("/tables/<name>/upload")
def upload_table(name: str) -> tuple[Response, int]:
    return _upload(name)


@bp.get("/uploads/<upload_id>")
def get_upload(upload_id: str) -> Response:
    auth.authorize(None)  # a token first: whether an id exists is not for anyone to probe
    try:
        key = uuid.UUID(upload_id)
    except ValueError:
        key = None
    row = ledger.get(get_db(), key) if key is not None else None
    if row is None:
        raise LabError(f"no upload with id {upload_id[:80]!r}", code="not_found", status=404)
    auth.authorize(str(row["target_table"]))
    return jsonify(row)


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _check_request(settings: Settings) -> str:
    """Cheap refusals before reading a byte of the body; returns the body's kind."""
    mimetype = request.mimetype
    if mimetype == intake.MULTIPART:
        kind = "multipart"
    elif mimetype in intake.CSV_TYPES:
        kind = "csv"
    else:
        raise LabError(
            f"unsupported content type {mimetype[:80]!r}: send multipart/form-data with a "
            f"{intake.FILE_FIELD!r} field, or a text/csv body",
            code="unsupported_media_type",
            status=415,
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise LabError(
            f"Content-Encoding {encoding[:40]!r} is not supported: send the CSV uncompressed",
            code="unsupported_encoding",
            status=415,
        )
    if request.content_length is not None and request.content_length > (
        settings.max_upload_bytes + (64 * 1024 if kind == "multipart" else 0)
    ):
        raise intake.too_large(settings.max_upload_bytes)
    return kind


def _idempotency_key() -> str | None:
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_CHARS or not all("!" <= c <= "~" for c in raw):
        raise LabError(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_CHARS} visible ASCII characters "
            "(a UUID is a good choice)",
            code="bad_idempotency_key",
        )
    return raw


def _upload(table: str) -> tuple[Response, int]:
    settings = _settings()
    started = time.perf_counter()
    auth.authorize(table)
    strategy = strategies.get(request.args.get("strategy") or settings.strategy)
    kind = _check_request(settings)
    key = _idempotency_key()
    db = get_db()
    if "\x00" in table or len(table.encode()) > _MAX_IDENTIFIER_BYTES:
        # Not a name PostgreSQL could hold (NUL cannot even be sent as a parameter).
        raise LabError(f"unknown table {table[:80]!r}", code="unknown_table", status=404)
    with db.connection() as conn:
        catalog.resolve(conn, table)  # unknown table → 404 before the body is read
        # Attempts whose worker or connection died are failed here: the reaper rides on
        # the uploads (and /readyz) instead of needing a schedule of its own.
        ledger.reap(conn)
    lease = get_lease()
    upload_id, claimed = ledger.claim(lease, table, strategy.name, key)
    digest = intake.Digest()
    if claimed:
        body = _open_body(kind, digest, settings, spool_raw=not strategy.streaming)
        return _load(upload_id, table, strategy, body, digest, started)
    # The key belongs to another attempt: read (and keep) this body to compare it.
    assert key is not None
    with _open_body(kind, digest, settings, spool_raw=True) as source:
        return _repeat(upload_id, table, key, strategy, source, digest, started)


def _load(
    upload_id: uuid.UUID,
    table: str,
    strategy: Strategy,
    body: contextlib.AbstractContextManager[BinaryIO],
    digest: intake.Digest,
    started: float,
) -> tuple[Response, int]:
    """Run the claimed attempt ``upload_id``: load, record the outcome, answer 201."""
    db, lease = get_db(), get_lease()
    try:
        try:
            with body as source:
                intake_ms = (time.perf_counter() - started) * 1000
                finalize = ledger.finalizer(upload_id, lambda: digest.nbytes, digest.hexdigest)
                result = strategy.load(source, table, db, finalize=finalize)
        except Exception as exc:
            _record_failure(lease, upload_id, exc, digest)
            raise
    finally:
        ledger.release(lease, upload_id)
    try:
        ledger.record_timings(lease, upload_id, result.timings)
    except Exception:
        # The rows and the 'succeeded' mark are committed: answering an error now would
        # invite a duplicate retry. The timings are also in the log line below.
        log.warning("could not record the timings of upload %s in the ledger", upload_id)
    _log_upload(upload_id, result, digest, intake_ms)
    if strategy.attaches_parts:
        maintenance.get_compactor().after_upload(table)
    t = result.timings
    return _created(
        {
            "upload_id": str(upload_id),
            "table": table,
            "rows": result.rows,
            "bytes": digest.nbytes,
            "strategy": result.strategy,
            "timings": {
                "parse_ms": round(t.parse_ms, 3),
                "in_db_ms": round(t.in_db_ms, 3),
                "commit_ms": round(t.commit_ms, 3),
                "total_ms": round(t.total_ms, 3),
            },
        },
        replayed=False,
    )


def _created(body: dict[str, Any], *, replayed: bool) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Location"] = url_for("upload.get_upload", upload_id=body["upload_id"])
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response, 201


def _repeat(
    holder: uuid.UUID,
    table: str,
    key: str,
    strategy: Strategy,
    source: BinaryIO,
    digest: intake.Digest,
    started: float,
) -> tuple[Response, int]:
    """A request whose key an earlier attempt holds: replay its result if it succeeded with
    the same table and content, 409 if not; if it failed, this request loads its own copy."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
    while True:
        row = _finished(holder, deadline)
        if row["status"] == "succeeded":
            if row["content_sha256"] == digest.hexdigest() and row["target_table"] == table:
                log.info("replayed upload %s for idempotency key %r", holder, key)
                return _created(_replay_body(row), replayed=True)
            raise LabError(
                f"{IDEMPOTENCY_HEADER} {key[:80]!r} was used for another upload (different "
                "content or table); nothing was loaded",
                code="idempotency_mismatch",
                status=409,
            )
        # The holder failed, which gives the key back: this request is now the attempt.
        holder, claimed = ledger.claim(get_lease(), table, strategy.name, key)
        if claimed:
            return _load(holder, table, strategy, contextlib.nullcontext(source), digest, started)


def _finished(upload_id: uuid.UUID, deadline: float) -> dict[str, Any]:
    """The attempt's ledger row once it is no longer loading (reaping it if its owner is
    gone); 409 ``idempotency_in_progress`` if it still loads at ``deadline``."""
    db = get_db()
    while True:
        with db.connection() as conn:
            ledger.reap(conn)
        row = ledger.get(db, upload_id)
        if row is not None and row["status"] != "loading":
            return row
        if time.monotonic() > deadline:
            raise LabError(
                f"an upload with this {IDEMPOTENCY_HEADER} is still loading; retry later",
                code="idempotency_in_progress",
                status=409,
            )
        time.sleep(_POLL_S)


def _replay_body(row: dict[str, Any]) -> dict[str, Any]:
    """The original 201 body, rebuilt from the ledger."""

    def ms(name: str) -> float:
        value = row[name]
        return round(float(value), 3) if value is not None else 0.0

    return {
        "upload_id": row["upload_id"],
        "table": row["target_table"],
        "rows": row["rows"],
        "bytes": row["bytes"],
        "strategy": row["strategy"],
        "timings": {name: ms(name) for name in ("parse_ms", "in_db_ms", "commit_ms", "total_ms")},
    }


@contextlib.contextmanager
def _open_body(
    kind: str, digest: intake.Digest, settings: Settings, *, spool_raw: bool
) -> Iterator[BinaryIO]:
    """The CSV stream of this request: the multipart ``file`` part or the raw body, read
    off the socket as the strategy consumes it (spooled first for strategies that need a
    seekable file); either way checked for compression and with uniform line endings
    (``intake.csv_body``)."""
    if kind == "multipart":
        source = intake.multipart_source(
            request.stream, request.content_type or "", digest, limit=settings.max_upload_bytes
        )
    else:
        source = intake.raw_source(
            request.stream, digest, settings.max_upload_bytes, request.content_length
        )
    if not spool_raw:
        yield intake.csv_body(source)
        return
    # Spooled already checked and rewritten, so the strategy gets a seekable file.
    with intake.spool(intake.csv_body(source), settings.spool_bytes) as spooled:
        yield spooled


def _record_failure(
    lease: ledger.Lease, upload_id: uuid.UUID, exc: Exception, digest: intake.Digest
) -> None:
    """Mark the ledger row failed with what the client is told; never mask ``exc``."""
    error = public_error(exc) or LabError(type(exc).__name__, code="internal_error", status=500)
    try:
        ledger.fail(lease, upload_id, error.to_dict(), digest.nbytes, None)
    except Exception:  # the database may be the thing that failed; the reaper follows up
        log.warning("could not mark upload %s as failed in the ledger", upload_id)


def _log_upload(
    upload_id: uuid.UUID, result: LoadResult, digest: intake.Digest, intake_ms: float
) -> None:
    """One line per upload: readable first, then key=value pairs for log tooling."""
    t = result.timings
    log.info(
        "Inserted %d rows in %.2f ms upload_id=%s table=%s rows=%d bytes=%d strategy=%s "
        "parse_ms=%.2f in_db_ms=%.2f commit_ms=%.2f total_ms=%.2f intake_ms=%.2f sha256=%s",
        result.rows,
        t.in_db_ms,
        upload_id,
        result.table,
        result.rows,
        digest.nbytes,
        result.strategy,
        t.parse_ms,
        t.in_db_ms,
        t.commit_ms,
        t.total_ms,
        intake_ms,
        digest.hexdigest(),
    )
