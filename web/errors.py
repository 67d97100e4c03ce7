"""Every error becomes a readable 4xx: JSON under /api, a page elsewhere; never a stack trace."""

from __future__ import annotations

import errno
import logging
import re

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.sansio.multipart import MultipartDecoder

from mirsearch.errors import (
    AudioError,
    CatalogError,
    IndexMismatchError,
    InvalidParameterError,
    MirsearchError,
    ModelError,
    NotAudioError,
    NotFoundError,
)

log = logging.getLogger(__name__)


def status_of(exc: MirsearchError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, NotAudioError):
        return 415
    if isinstance(exc, AudioError | InvalidParameterError):
        return 422
    if isinstance(exc, ModelError | IndexMismatchError | CatalogError):
        return 503
    return 400


def respond(status: int, code: str, message: str, headers: dict | None = None):
    """The error as JSON under /api, as a page elsewhere, with `headers` (HTTP's own: the
    methods a 405 allows, the length a 416 had to keep within, when a 503 may be retried)."""
    if _in_api():
        return jsonify({"error": {"code": code, "message": message}}), status, headers or {}
    return render_template("error.html", status=status, message=message), status, headers or {}


def init_app(app: Flask) -> None:
    @app.errorhandler(MirsearchError)
    def mirsearch_error(exc: MirsearchError):
        return respond(status_of(exc), exc.code, _without_temp_path(str(exc)))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        kept = {
            k: v
            for k, v in exc.get_headers()
            if k.lower() in ("allow", "content-range", "retry-after")
        }
        message = exc.description or exc.name
        if exc.description == type(exc).description:  # Werkzeug's own words: say what to do
            message = _routing_advice(exc, kept.get("Allow", "")) or message
        return respond(exc.code or 400, code, message, kept)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if _too_many_parts(exc):
            message = (
                f"the form has over {request.max_form_parts:,} fields: send the audio in the "
                "field 'file', with at most a few others (k, genre)"
            )
            return respond(413, "request_entity_too_large", message)
        if limit and request.content_length is not None and request.content_length <= limit:
            field = request.max_form_memory_size  # a field that is not a file: a clip sent as text
            message = (
                f"a form field other than a file upload is over {field:,} bytes: send the audio "
                "as a file in the field 'file' (curl -F file=@clip.mp3, not file=<clip.mp3)"
            )
            return respond(413, "request_entity_too_large", message)
        told = f" of {limit:,} bytes ({limit / 2**20:.1f} MB)" if limit else ""
        return respond(413, "request_entity_too_large", f"the upload is over the limit{told}")

    @app.errorhandler(OSError)
    def storage_full(exc: OSError):
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return unexpected(exc)
        log.error("no room to work on %s %s: %s", request.method, request.path, exc)
        message = f"the server has no room left to receive or read the upload ({exc.strerror})"
        return respond(503, "storage_full", message + ": its temporary folder needs space")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return respond(500, "internal_error", "something went wrong on our side; it was logged")


def _too_many_parts(exc: RequestEntityTooLarge) -> bool:
    """Whether Werkzeug refused a form for its number of parts (max_form_parts): it raises the same
    bare 413 as for a field over max_form_memory_size, from another place only."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is MultipartDecoder.next_event.__code__


def _routing_advice(exc: HTTPException, allow: str) -> str | None:
    """What to ask instead, for a URL no route takes or a method its route does not."""
    if isinstance(exc, MethodNotAllowed):
        methods = [m for m in allow.split(", ") if m not in ("HEAD", "OPTIONS")]
        upload = ""
        if methods == ["POST"]:  # the API's POST routes all take an upload
            upload = " with the audio in a multipart field 'file'"
        return f"{request.path} takes {' or '.join(methods)}{upload}, not {request.method}"
    if not isinstance(exc, NotFound):
        return None
    track = re.fullmatch(r"/(?:api/)?tracks/([^/]+)(?:/audio|/similar)?", request.path)
    if track and not track.group(1).isdigit():
        return f"track ids are positive whole numbers, not {track.group(1)[:40]!r}"
    if track:  # digits past what the route converts (over 4,300 of them): a number, no track
        return f"no track with id {track.group(1)[:20]}... ({len(track.group(1)):,} digits)"
    if _in_api():
        return f"no API route {request.path[:100]}: /api/openapi.json lists them"
    return None


def _in_api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def _without_temp_path(message: str) -> str:
    """Uploads are decoded from a temporary file: say 'the upload' rather than its path."""
    upload = g.get("upload_path")
    return message.replace(str(upload), "the upload") if upload else message
