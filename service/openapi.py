"""``GET /openapi.json``: the service's contract, written down once as data."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

import strategies

bp = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}
#: Bearer token, or none at all: development mode without tokens is open.
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {}]


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "Bad input (unknown strategy, malformed body, bad CSV) with line and column",
        401: "No valid bearer token (WWW-Authenticate: Bearer)",
        403: "The bearer token has no access to this table",
        404: "Unknown table or upload",
        405: "Method not allowed",
        413: "Body over the size limit",
        409: "Idempotency-Key already used for other content or table, or still loading",
        415: "Content type is neither multipart/form-data nor text/csv, or the body is compressed",
        422: "CSV values the table rejects, with line and column; nothing was inserted",
        503: "Database unavailable (Retry-After) or migrations not applied",
        504: "The load ran into the database's statement_timeout; nothing was inserted",
    }
    return {
        str(code): {
            "description": reasons[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code in codes
    }


def _upload_operation(summary: str, with_table: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": "strategy",
            "in": "query",
            "required": False,
            "description": "Insert strategy (default from LAB_STRATEGY)",
            "schema": {"type": "string", "enum": strategies.names()},
        },
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Repeating a key with the same content and table replays the first "
            "result (201, Idempotent-Replayed: true) instead of loading again",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
    ]
    if with_table:
        parameters.insert(
            0,
            {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "A table of the ingest schema",
                "schema": {"type": "string"},
            },
        )
    return {
        "summary": summary,
        "security": _SECURED,
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "201": {
                "description": "All rows loaded and committed; the ledger row is 'succeeded'",
                "headers": {
                    "Location": {
                        "description": "The ledger row of this upload",
                        "schema": {"type": "string"},
                    },
                    "Idempotent-Replayed": {
                        "description": "'true' when this is the stored result of an earlier "
                        "upload with the same Idempotency-Key, content and table",
                        "schema": {"type": "string", "enum": ["true"]},
                    },
                },
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}
                },
            },
            **_errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504),
        },
    }


def spec() -> dict[str, Any]:
    timing = {"type": "number", "minimum": 0}
    nullable_number = {"type": ["number", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ingest-lab upload service",
            "version": "1",
            "description": "CSV uploads into PostgreSQL: streamed, atomic, recorded in a ledger.",
        },
        "paths": {
            "/upload": {
                "post": _upload_operation("Load a CSV into ingest.records", with_table=False),
            },
            "/tables/{name}/upload": {
                "post": _upload_operation("Load a CSV into another ingest table", with_table=True),
            },
            "/uploads/{upload_id}": {
                "get": {
                    "summary": "The ledger row of one upload",
                    "security": _SECURED,
                    "parameters": [
                        {
                            "name": "upload_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The ledger row",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/LedgerRow"}
                                }
                            },
                        },
                        **_errors(401, 403, 404, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {"200": {"description": "Up"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: database reachable and migrations applied",
                    "responses": {"200": {"description": "Ready"}, **_errors(503)},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document"}},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from LAB_AUTH_TOKENS; required outside development "
                    "mode or whenever tokens are configured",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "line", "column"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "line": {"type": ["integer", "null"]},
                                "column": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
                "Upload": {
                    "type": "object",
                    "required": ["upload_id", "table", "rows", "bytes", "strategy", "timings"],
                    "properties": {
                        "upload_id": {"type": "string", "format": "uuid"},
                        "table": {"type": "string"},
                        "rows": {"type": "integer", "minimum": 0},
                        "bytes": {"type": "integer", "minimum": 0},
                        "strategy": {"type": "string"},
                        "timings": {
                            "type": "object",
                            "required": ["parse_ms", "in_db_ms", "commit_ms", "total_ms"],
                            "properties": {
                                "parse_ms": timing,
                                "in_db_ms": timing,
                                "commit_ms": timing,
                                "total_ms": timing,
                            },
                        },
                    },
                },
                "LedgerRow": {
                    "type": "object",
                    "properties": {
                        "upload_id": {"type": "string", "format": "uuid"},
                        "target_table": {"type": "string"},
                        "strategy": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["pending", "loading", "succeeded", "failed"],
                        },
                        "rows": {"type": ["integer", "null"]},
                        "bytes": {"type": ["integer", "null"]},
                        "content_sha256": {"type": ["string", "null"]},
                        "idempotency_key": {"type": ["string", "null"]},
                        "parse_ms": nullable_number,
                        "in_db_ms": nullable_number,
                        "commit_ms": nullable_number,
                        "total_ms": nullable_number,
                        "error": {"type": ["object", "null"]},
                        "created_at": {"type": "string"},
                        "finished_at": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(spec())
