"""The one place errors become HTTP responses: ``{"error": {code, message, line, column}}``.

``LabError`` (a user's mistake) keeps its status; an unreachable database is 503 with
Retry-After; HTTP errors raised by Flask/Werkzeug (404, 405, 413, …) keep their status
and headers but get the JSON body; anything else is a bug, logged with its traceback and
answered with a bare 500 that reveals nothing.
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
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}


def error_response(exc: LabError) -> Response:
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    if exc.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _lab_error(exc: LabError) -> Response:
    return error_response(exc)


def _db_unavailable(exc: Exception) -> Response:
    error = unavailable(exc)
    log.warning("database unavailable: %s", error.message)
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
    log.exception("unhandled error")
    body = LabError("internal error; the upload was not stored", code="internal_error").to_dict()
    response = jsonify(body)
    response.status_code = 500
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(LabError, _lab_error)
    app.register_error_handler(PoolTimeout, _db_unavailable)
    app.register_error_handler(psycopg.OperationalError, _db_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
