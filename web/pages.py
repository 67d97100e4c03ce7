"""Server-rendered pages: search (upload, drop or record), track, catalog, duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flask import Blueprint, render_template, request

from mirsearch.audio import load
from mirsearch.config import MAX_PAGE
from mirsearch.errors import MirsearchError
from web.api import engine, int_arg

bp = Blueprint("pages", __name__)


@bp.get("/")
def search():
    return render_template(
        "search.html", genres=engine().catalog.genres(), max_k=engine().settings.search.max_k
    )


@bp.get("/tracks/<int:track_id>")
def track(track_id: int):
    row, waveform = engine().track(track_id), engine().catalog.waveform(track_id)
    try:
        similar = engine().similar(track_id, k=8) if row.status == "indexed" else []
    except MirsearchError:
        similar = []
    probabilities = sorted((row.genre_probabilities or {}).items(), key=lambda kv: -kv[1])
    return render_template(
        "track.html",
        track=row,
        similar=similar,
        probabilities=probabilities,
        waveform=polyline(waveform.peaks if waveform else _decoded_envelope(row.path)),
        on_disk=Path(row.path).is_file(),
    )


def polyline(envelope: bytes | None) -> str:
    """An SVG polygon of a peak envelope (features.peak_envelope) in 0–100 × 0–40, or ''."""
    if not envelope:
        return ""
    peaks = np.frombuffer(envelope, dtype=np.uint8) / 255.0
    x = 100 * np.arange(peaks.size) / max(peaks.size - 1, 1)
    top = [f"{x[i]:.2f},{20 - 19 * p:.2f}" for i, p in enumerate(peaks)]
    bottom = [f"{x[i]:.2f},{20 + 19 * p:.2f}" for i, p in reversed(list(enumerate(peaks)))]
    return " ".join(top + bottom)


def _decoded_envelope(path: str) -> bytes | None:
    """The envelope of a track indexed before the catalog kept it (migration 0006), from its
    file (a 10-minute track: 3 s), or None if the file cannot be read."""
    from mirsearch.features import peak_envelope

    try:
        return peak_envelope(load(path).samples)
    except MirsearchError:
        return None


@bp.get("/catalog")
def catalog():
    page = min(max(1, int_arg("page", 1)), MAX_PAGE)
    per_page = min(max(1, int_arg("per_page", 25)), 200)
    q = request.args.get("q") or None
    genre = request.args.get("genre") or None
    rows, total = engine().catalog.list_tracks(q=q, genre=genre, page=page, per_page=per_page)
    pages = max(1, -(-total // per_page))
    if page > pages:  # past the end (an old link, a typed number): the last page
        page = pages
        rows, total = engine().catalog.list_tracks(q=q, genre=genre, page=page, per_page=per_page)
    return render_template(
        "catalog.html",
        tracks=rows,
        total=total,
        page=page,
        pages=pages,
        per_page=per_page,
        q=q or "",
        genre=(genre or "").lower(),  # as the genre list names them
        genres=engine().catalog.genres(),
    )


@bp.get("/duplicates")
def duplicates():
    return render_template("duplicates.html", groups=engine().dupes())
