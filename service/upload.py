"""The upload endpoints: a CSV body in, an atomic load and a ledger entry out."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

import strategies
from lab.config import Settings
from lab.errors import LabError
from service import intake, ledger
from service.db import get_db
from strategies import catalog
from strategies.base import LoadResult

bp = Blueprint("upload", __name__)
log = logging.getLogger("service.upload")

DEFAULT_TABLE = "records"
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1


@bp.post("/upload")
def upload_records() -> tuple[Response, int]:
    return _upload(DEFAULT_TABLE)


@bp.post("/tables/<name>/upload")
def upload_table(name: str) -> tuple[Response, int]:
    return _upload(name)


@bp.get("/uploads/<upload_id>")
def get_upload(upload_id: str) -> Response:
    try:
        key = uuid.UUID(upload_id)
    except ValueError:
        key = None
    row = ledger.get(get_db(), key) if key is not None else None
    if row is None:
        raise LabError(f"no upload with id {upload_id[:80]!r}", code="not_found", status=404)
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


def _upload(table: str) -> tuple[Response, int]:
    settings = _settings()
    started = time.perf_counter()
    strategy = strategies.get(request.args.get("strategy") or settings.strategy)
    kind = _check_request(settings)
    db = get_db()
    if "\x00" in table or len(table.encode()) > _MAX_IDENTIFIER_BYTES:
        # Not a name PostgreSQL could hold (NUL cannot even be sent as a parameter).
        raise LabError(f"unknown table {table[:80]!r}", code="unknown_table", status=404)
    with db.connection() as conn:
        catalog.resolve(conn, table)  # unknown table → 404 before the body is read
    upload_id = ledger.start(db, table, strategy.name)
    digest = intake.Digest()
    try:
        with _open_body(kind, digest, settings, spool_raw=not strategy.streaming) as source:
            intake_ms = (time.perf_counter() - started) * 1000
            finalize = ledger.finalizer(upload_id, lambda: digest.nbytes, digest.hexdigest)
            result = strategy.load(source, table, db, finalize=finalize)
    except Exception as exc:
        _record_failure(upload_id, exc, digest)
        raise
    try:
        ledger.record_timings(db, upload_id, result.timings)
    except Exception:
        # The rows and the 'succeeded' mark are committed: answering an error now would
        # invite a duplicate retry. The timings are also in the log line below.
        log.warning("could not record the timings of upload %s in the ledger", upload_id)
    _log_upload(upload_id, result, digest, intake_ms)
    body = {
        "upload_id": str(upload_id),
        "table": table,
        "rows": result.rows,
        "bytes": digest.nbytes,
        "strategy": result.strategy,
        "timings": {
            "parse_ms": round(result.timings.parse_ms, 3),
            "in_db_ms": round(result.timings.in_db_ms, 3),
            "commit_ms": round(result.timings.commit_ms, 3),
            "total_ms": round(result.timings.total_ms, 3),
        },
    }
    response = jsonify(body)
    response.headers["Location"] = url_for("upload.get_upload", upload_id=str(upload_id))
    return response, 201


@contextlib.contextmanager
def _open_body(
    kind: str, digest: intake.Digest, settings: Settings, *, spool_raw: bool
) -> Iterator[BinaryIO]:
    """The CSV stream of this request: the spooled multipart part, or the raw body (read
    off the socket by streaming strategies, spooled first for the others); either way
    checked for compression and with uniform line endings (``intake.csv_body``)."""
    if kind == "multipart":
        spool = intake.spool_multipart(
            request.stream,
            request.content_type or "",
            digest,
            limit=settings.max_upload_bytes,
            spool_bytes=settings.spool_bytes,
        )
        with spool:
            yield intake.csv_body(spool)
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


def _record_failure(upload_id: uuid.UUID, exc: Exception, digest: intake.Digest) -> None:
    """Mark the ledger row failed with what the client is told; never mask ``exc``."""
    if isinstance(exc, LabError):
        error = exc.to_dict()
    elif isinstance(exc, HTTPException):
        error = LabError(exc.description or exc.name, code="http_error").to_dict()
    else:
        error = LabError(type(exc).__name__, code="internal_error").to_dict()
    try:
        ledger.fail(get_db(), upload_id, error, digest.nbytes, None)
    except Exception:  # the database may be the thing that failed
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
