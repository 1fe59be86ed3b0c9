"""The upload service: a Flask application factory.

``gunicorn 'service:create_app()'`` builds one app (and one connection pool) per worker.
Configuration comes only from ``lab.config.Settings`` (the environment); tests pass
``{"SETTINGS": Settings(...)}`` and Flask config keys in ``test_config``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask

from lab.config import Settings
from lab.database import resolve_url


def _configure_logging(level: str) -> None:
    """INFO lines to stdout (the container and gunicorn convention), once per process."""
    logger = logging.getLogger("service")
    logger.setLevel(level)
    if not any(getattr(h, "_lab", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
        handler._lab = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    from service import auth, db, errors, health, maintenance, openapi, upload

    app = Flask(__name__)
    config = dict(test_config or {})
    settings: Settings = config.pop("SETTINGS", None) or Settings.from_env()
    app.config.update(
        SETTINGS=settings,
        # Never starts a database from inside a worker: the embedded cluster's URL only.
        DATABASE_URL=settings.database_url or resolve_url(settings, start=False),
        # Werkzeug refuses bigger bodies with 413 itself, on top of the streaming checks.
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 64 * 1024,
    )
    app.config.update(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _configure_logging(settings.log_level)

    auth.init_app(app)  # first: a production service without tokens must not start
    db.init_app(app)
    maintenance.init_app(app)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(upload.bp)
    app.register_blueprint(openapi.bp)
    return app
