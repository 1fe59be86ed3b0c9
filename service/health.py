"""Liveness (the process answers) and readiness (database reachable, migrations applied)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from lab.errors import LabError
from lab.migrate import pending
from service.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    settings = current_app.config["SETTINGS"]
    with get_db().connection() as conn:
        todo = pending(conn, settings.migrations_dir)
    if todo:
        raise LabError(
            "migrations not applied: " + ", ".join(m.path.name for m in todo),
            code="not_ready",
            status=503,
        )
    return jsonify({"status": "ready"})
