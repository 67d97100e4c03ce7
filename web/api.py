"""The JSON API: the same operations and field names as the CLI's JSON (../shared/CONTRACTS.md)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, current_app, g, jsonify, request, send_file
from werkzeug.exceptions import BadRequest, PreconditionFailed, ServiceUnavailable

from mirsearch.api import Engine
from mirsearch.config import MAX_PAGE, MAX_PER_PAGE
from mirsearch.containers import packets_length_s, probe
from mirsearch.errors import (
    AudioError,
    IndexMismatchError,
    InvalidParameterError,
    NotFoundError,
)
from mirsearch.files import AUDIO_EXTENSIONS
from web.openapi import SPEC

bp = Blueprint("api", __name__, url_prefix="/api")

FORM_FIELDS = ("k", "genre", "similar")  # the fields of text an upload's route reads
LONG_UPLOADS = "mirsearch.long_uploads"  # app.extensions: the worker's slots for long uploads
RETRY_AFTER_S = 60  # what a 503 for want of one asks a client to wait
MAX_DIGITS = 18  # a whole-number parameter's; every limit it is checked against is far below
# what a browser writes for a newline and a carriage return in a file's name (HTML's
# multipart/form-data encoding; its %22, a double quote, Werkzeug reads; a % comes as it is)
ESCAPED_IN_NAMES = {"%0A": "\n", "%0D": "\r"}

MIMETYPES = {
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".3gp": "video/3gpp",
    ".3g2": "video/3gpp2",
    ".wmv": "video/x-ms-wmv",
    ".asf": "video/x-ms-asf",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".flv": "video/x-flv",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".vob": "video/mpeg",
}


def engine() -> Engine:
    return current_app.extensions["mirsearch"]


@contextmanager
def upload() -> Iterator[tuple[Path, str]]:
    """The multipart field `file` saved to a temporary file, always deleted afterwards."""
    if "file" not in request.files:
        raise BadRequest(_no_file_field())
    storage = request.files["file"]
    name = client_name(storage.filename)
    # the name's extension is kept for an audio or video one only: FFmpeg reads an .m3u8 or
    # .m3u as a playlist of files on this machine, whose music it then answered with
    suffix = Path(name).suffix.lower()
    suffix = suffix if suffix in AUDIO_EXTENSIONS else ""
    handle, path = tempfile.mkstemp(prefix="mirsearch-upload-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as f:
            storage.save(f)
        if os.path.getsize(path) == 0:
            raise BadRequest("the uploaded file is empty")
        g.upload_path = path
        with _slot_if_long(Path(path)):
            yield Path(path), name
    finally:
        os.unlink(path)


def client_name(filename: str | None) -> str:
    """The upload's name as the client's file has it, to answer with (never a path here): a
    browser's escapes of a newline and a carriage return undone (it had been answered as
    `new%0Aline.wav`). Its other characters come as they are, % among them: a name holding
    "%0A" itself cannot be told from one holding a newline, and is read as the browser's."""
    if not filename:
        return "upload"
    return re.sub("%0A|%0D", lambda m: ESCAPED_IN_NAMES[m.group()], filename)


@contextmanager
def _slot_if_long(path: Path) -> Iterator[None]:
    """One of the worker's slots for long uploads (ServerConfig.long_upload_s of audio or more,
    `_declared_s`), held while the upload is answered; a 503 with Retry-After when none frees
    within ServerConfig.long_wait_s. Shorter uploads pass at once, whatever is running."""
    server = engine().settings.server
    if _declared_s(path) < server.long_upload_s:
        yield
        return
    slots = current_app.extensions[LONG_UPLOADS]
    if not slots.acquire(timeout=server.long_wait_s):
        raise ServiceUnavailable(
            f"the server is busy with other long uploads ({server.long_upload_s / 60:g} min of "
            "audio or more): try again in a minute, or send a shorter clip",
            retry_after=RETRY_AFTER_S,
        )
    try:
        yield
    finally:
        slots.release()


def _declared_s(path: Path) -> float:
    """How long the upload's audio says it is, or its packets where it does not say (a browser's
    recording); 0 for a file the engine refuses before decoding it (not audio, over the query
    limit), which costs nothing."""
    try:
        info = probe(path, config=engine().settings.audio)
        return info.duration_s or packets_length_s(path, info.stream)
    except AudioError:
        return 0.0


def _no_file_field() -> str:
    """Why a request has no field `file`, as near as it can be told."""
    if request.mimetype != "multipart/form-data":
        return "send the audio as multipart/form-data in a field named 'file'"
    if "file" in request.form:  # curl's -F file=clip.mp3 (or file=<clip.mp3) sends text
        return "the field 'file' arrived as text: send the audio as a file (curl -F file=@clip.mp3)"
    if request.files:
        return f"send the audio in a field named 'file', not {', '.join(map(repr, request.files))}"
    unknown = [name for name in request.form if name not in FORM_FIELDS]
    if unknown:  # text fields only, none the API reads
        named = ", ".join(map(repr, unknown[:5])) + (", …" if len(unknown) > 5 else "")
        return f"send the audio in a field named 'file': the form had text fields only ({named})"
    return (  # Werkzeug drops a part whose headers are not UTF-8 (a name in Latin-1) unseen
        "no field named 'file' arrived whole: send the audio in one (was the upload cut off, or "
        "the file's name not in UTF-8?)"
    )


def int_arg(name: str, default: int) -> int:
    raw = request.values.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.removeprefix("-").isdigit():  # int() takes "1_0", " 3"
        raise BadRequest(f"'{name}' must be a whole number, got {raw[:40]!r}")
    if len(raw) > MAX_DIGITS:  # int() refuses over 4,300 digits: a 500 had been
        raise BadRequest(f"'{name}' must be a whole number of at most {MAX_DIGITS} digits")
    return int(raw)


def paging() -> tuple[int, int]:
    """The `page` and `per_page` a listing asks for (50 a page by default); InvalidParameterError
    outside 1 to MAX_PAGE and 1 to MAX_PER_PAGE."""
    page, per_page = int_arg("page", 1), int_arg("per_page", 50)
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidParameterError(
            f"page must be 1 to {MAX_PAGE:,} and per_page 1 to {MAX_PER_PAGE}"
        )
    return page, per_page


def genres_arg() -> list[str]:
    return request.values.getlist("genre")


@bp.post("/search")
def search():
    k = int_arg("k", engine().settings.search.k)
    with upload() as (path, name):
        results = engine().search(path, k=k, genres=genres_arg())
    return jsonify({"query": name, "results": [r.to_dict() for r in results]})


@bp.post("/match")
def match():
    with upload() as (path, name):
        matches = engine().match(path)
    return jsonify({"query": name, "matches": [m.to_dict() for m in matches]})


@bp.post("/classify")
def classify():
    similar_k = int_arg("similar", 5)
    with upload() as (path, name):
        result = engine().classify(path, similar_k=similar_k)
    return jsonify({"query": name, **result.to_dict()})


@bp.post("/examine")
def examine():
    """search, match and classify of one upload, read once: what the site asks of a new clip."""
    k = int_arg("k", engine().settings.search.k)
    with upload() as (path, name):
        examined = engine().examine(path, k=k, genres=genres_arg())
    return jsonify({"query": name, **examined.to_dict()})


@bp.get("/tracks")
def tracks():
    page, per_page = paging()
    genre = request.args.get("genre") or None
    rows, total = engine().catalog.list_tracks(
        q=request.args.get("q") or None, genre=genre, page=page, per_page=per_page
    )
    return jsonify(
        {
            "tracks": [track_json(r) for r in rows],
            "total": total,
            "page": page,
            "per_page": per_page,
        }
    )


@bp.get("/tracks/<int:track_id>")
def track(track_id: int):
    return jsonify(track_json(engine().track(track_id)))


@bp.get("/tracks/<int:track_id>/similar")
def similar(track_id: int):
    k = int_arg("k", engine().settings.search.k)
    results = engine().similar(track_id, k=k, genres=genres_arg())
    return jsonify({"track_id": track_id, "results": [r.to_dict() for r in results]})


@bp.get("/tracks/<int:track_id>/audio")
def audio(track_id: int):
    """The catalog file, chosen by id only; Range requests let the player seek."""
    path = playable(engine().track(track_id))
    changed_since_asked(path, track_id)
    mimetype = MIMETYPES.get(path.suffix.lower(), "application/octet-stream")
    asked = request.range
    if "HTTP_RANGE" in request.environ and (
        asked is None
        or asked.units != "bytes"
        or len(asked.ranges) > 1
        or -asked.ranges[0][0] > path.stat().st_size  # a suffix longer than the file
    ):  # unreadable, not bytes, several ranges or all of it: the whole file (RFC 9110), not 416
        del request.environ["HTTP_RANGE"]
    # its name in Content-Disposition, where a header cannot hold a newline (a 500 had been)
    name = "".join(c if c.isprintable() else "_" for c in path.name)
    sent = send_file(path, mimetype=mimetype, download_name=name, conditional=True, max_age=3600)
    if sent.status_code == PreconditionFailed.code:  # Werkzeug keeps the whole file as its body
        sent.close()
        raise PreconditionFailed(f"track {track_id}'s file is not the one If-Match names")
    return sent


def changed_since_asked(path: Path, track_id: int) -> None:
    """PreconditionFailed (412) when the request's If-Unmodified-Since is before the file's last
    change, to the second its Last-Modified says (Werkzeug reads If-Match only: the whole file had
    been sent). As RFC 9110 orders them, it counts only without an If-Match, and a date that
    cannot be read is no condition."""
    since = request.if_unmodified_since
    if since is None or "HTTP_IF_MATCH" in request.environ:
        return
    modified = datetime.fromtimestamp(int(path.stat().st_mtime), UTC)
    if modified > since:
        raise PreconditionFailed(
            f"track {track_id}'s file changed at {modified:%Y-%m-%d %H:%M:%S} UTC, after the "
            "If-Unmodified-Since date"
        )


def playable(row) -> Path:
    """The file of indexed track `row` as it was indexed, to send to a client; NotFoundError
    saying why not. A failed row's path names whatever the walk met there (a link to
    /etc/passwd is recorded as a failed file), and a file changed since it was indexed, a link
    put in its place among them, is not the track: neither is served, nor a file the server
    may not read."""
    if row.status != "indexed":
        raise NotFoundError(f"track {row.id} has no audio to play: it is {row.status}")
    path = Path(row.path)
    try:
        if not path.is_file():
            raise NotFoundError(
                f"track {row.id}'s file is no longer on disk: run `mirsearch index --prune` on "
                "its folder to drop the track, or put the file back"
            )
        if path.resolve() != path or path.stat().st_size != row.size_bytes:  # indexed resolved
            raise NotFoundError(
                f"track {row.id}'s file changed since it was indexed: run `mirsearch index` on "
                "its folder to take the new one in"
            )
        open(path, "rb").close()  # one the server may not read had been a 500 in send_file
    except OSError as exc:  # that, or its folder closed to the server (stat refused: a 500)
        raise NotFoundError(f"track {row.id}'s file cannot be read ({exc.strerror})") from exc
    return path


@bp.get("/genres")
def genres():
    return jsonify({"genres": [{"genre": g, "count": n} for g, n in engine().catalog.genres()]})


@bp.get("/duplicates")
def duplicates():
    """Every near-duplicate group, or with `page` or `per_page` one page of them (50 a page by
    default), and `total` always."""
    if request.values.get("page") is None and request.values.get("per_page") is None:
        groups, total = engine().dupes_page()
        return jsonify({"groups": groups, "total": total})
    page, per_page = paging()
    groups, total = engine().dupes_page(page=page, per_page=per_page)
    return jsonify({"groups": groups, "total": total, "page": page, "per_page": per_page})


@bp.get("/health")
def health():
    """The server answers; "status" says whether queries can be: "degraded", with the `problem`,
    when the index cannot be loaded (another model's, files missing), while the catalog's pages
    still answer (it had said "ok" while every query failed)."""
    state = engine().catalog.index_state()
    body = {
        "status": "ok",
        "tracks": engine().catalog.counts().get("indexed", 0),
        "index_generation": state.generation,
        "model_hash": state.model_hash,
    }
    try:
        engine().index()
    except IndexMismatchError as exc:
        body |= {"status": "degraded", "problem": str(exc)}
    return jsonify(body)


@bp.get("/openapi.json")
def openapi():
    return jsonify(SPEC)


def track_json(row) -> dict:
    """A catalog row for clients: every column, with `track_id` as in search results."""
    data = row.to_dict()
    data["track_id"] = data.pop("id")
    return data
