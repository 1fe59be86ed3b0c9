"""Liveness (the process answers) and readiness (database reachable, migrations applied).

``/readyz`` also reaps orphaned uploads (see ``service.ledger``): probed every few seconds
by compose or an orchestrator, it fails them without waiting for the next upload.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from lab.errors import LabError
from lab.migrate import pending
from service import ledger
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
        if not todo:
            ledger.reap(conn)
    if todo:
        raise LabError(
            "migrations not applied: " + ", ".join(m.path.name for m in todo),
            code="not_ready",
            status=503,
        )
    return jsonify({"status": "ready"})
