"""The one place errors become HTTP responses: ``{"error": {code, message, line, column}}``.

``LabError`` (a user's mistake) keeps its status; an unreachable database is 503 with
Retry-After; a load cut by ``statement_timeout`` is 504 ``statement_timeout``; a 401 carries
``WWW-Authenticate: Bearer``; HTTP errors raised by Flask/Werkzeug (404, 405, 413, …) keep
their status and headers but get the JSON body; anything else is a bug, logged with its
traceback and answered with a bare 500 that reveals nothing.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, Response, jsonify
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from lab.errors import LabError
from service.db import RETRY_AFTER_S, unavailable

log = logging.getLogger("service")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}


def statement_timeout(reason: str) -> LabError:
    return LabError(
        f"the database cut the load off ({reason.strip() or 'canceling statement'}; "
        "LAB_STATEMENT_TIMEOUT_MS); nothing was loaded",
        code="statement_timeout",
        status=504,
    )


#: SQLSTATE classes meaning "the database is not there for us right now": connection
#: exceptions, operator intervention (shutdown, restart), insufficient resources. Used for
#: drivers other than psycopg (asyncpg, ADBC), whose errors carry a ``sqlstate``.
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})


def public_error(exc: BaseException) -> LabError | None:
    """What the client is told about ``exc`` (and the ledger records), or None for a bug."""
    if isinstance(exc, LabError):
        return exc
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return statement_timeout(exc.diag.message_primary or "")
    if isinstance(exc, PoolTimeout | psycopg.OperationalError):
        return unavailable(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate == "57014":
            return statement_timeout(str(exc).splitlines()[0] if str(exc) else "")
        if sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate == "55000":
            return unavailable(exc)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return LabError(
            exc.description or exc.name, code=_HTTP_CODES.get(status, "http_error"), status=status
        )
    return None


def error_response(exc: LabError) -> Response:
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    if exc.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ingest-lab"'
    return response


def _lab_error(exc: LabError) -> Response:
    return error_response(exc)


def _db_unavailable(exc: Exception) -> Response:
    error = unavailable(exc)
    log.warning("database unavailable: %s", error.message)
    return error_response(error)


def _query_canceled(exc: psycopg.errors.QueryCanceled) -> Response:
    error = statement_timeout(exc.diag.message_primary or "")
    log.warning("statement timeout: %s", error.message)
    return error_response(error)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    body = LabError(
        exc.description or exc.name, code=_HTTP_CODES.get(status, "http_error"), status=status
    ).to_dict()
    response = jsonify(body)
    response.status_code = status
    # Keep what the exception adds, e.g. the Allow header of a 405.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unexpected(exc: Exception) -> Response:
    known = public_error(exc)  # e.g. another driver's "connection lost" or timeout
    if known is not None:
        log.warning("%s: %s", known.code, known.message)
        return error_response(known)
    log.exception("unhandled error")
    body = LabError("internal error; the upload was not stored", code="internal_error").to_dict()
    response = jsonify(body)
    response.status_code = 500
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(LabError, _lab_error)
    app.register_error_handler(PoolTimeout, _db_unavailable)
    app.register_error_handler(psycopg.OperationalError, _db_unavailable)
    app.register_error_handler(psycopg.errors.QueryCanceled, _query_canceled)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
