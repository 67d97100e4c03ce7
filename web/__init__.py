"""The mirsearch web site and JSON API: `create_app()` builds a Flask app around one Engine."""

from __future__ import annotations

import threading

from flask import Flask, Response

from mirsearch.api import Engine
from mirsearch.config import Settings
from web import api, errors, pages

# Every answer's: a file served as audio is never run as a page (a catalog file may hold
# anything), pages load their own scripts, styles and media only, and no other site frames them.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(test_config: dict | None = None, *, threads: int | None = None) -> Flask:
    """An app whose Engine (model, catalog, vector index) is loaded once and shared by threads.

    `test_config` may hold SETTINGS (a mirsearch Settings) and any Flask setting, e.g.
    MAX_CONTENT_LENGTH (default: ServerConfig.max_upload_bytes); `threads` caps the network's
    threads (Engine).
    """
    app = Flask(__name__)
    config = dict(test_config or {})
    settings = config.pop("SETTINGS", None) or Settings.from_env()
    app.config.from_mapping(MAX_CONTENT_LENGTH=settings.server.max_upload_bytes)
    app.json.sort_keys = False  # fields in the order the CLI prints them (Flask sorts them)
    app.config.update(config)
    app.extensions["mirsearch"] = Engine(settings, threads=threads)
    app.extensions[api.LONG_UPLOADS] = threading.BoundedSemaphore(settings.server.long_uploads)
    errors.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.after_request(_secured)
    return app


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
