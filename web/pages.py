"""Server-rendered pages: search (upload, drop or record), track, catalog, duplicates."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, render_template, request

from mirsearch.audio import load
from mirsearch.config import MAX_PAGE
from mirsearch.errors import MirsearchError
from web.api import engine, int_arg

bp = Blueprint("pages", __name__)
WAVEFORM_POINTS = 400


@bp.get("/")
def search():
    return render_template("search.html", genres=engine().catalog.genres())


@bp.get("/tracks/<int:track_id>")
def track(track_id: int):
    row = engine().track(track_id)
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
        waveform=waveform_points(row.path),
    )


def waveform_points(path: str) -> str:
    """An SVG polyline of the track's peak envelope (0–100 × 0–40), or '' if it can't be read."""
    try:
        samples = load(path).samples
    except MirsearchError:
        return ""
    chunks = np.array_split(np.abs(samples), WAVEFORM_POINTS)
    peaks = np.array([c.max() if c.size else 0.0 for c in chunks])
    peaks = peaks / (peaks.max() + 1e-9)
    top = [f"{100 * i / (WAVEFORM_POINTS - 1):.2f},{20 - 19 * p:.2f}" for i, p in enumerate(peaks)]
    bottom = [
        f"{100 * i / (WAVEFORM_POINTS - 1):.2f},{20 + 19 * p:.2f}"
        for i, p in reversed(list(enumerate(peaks)))
    ]
    return " ".join(top + bottom)


@bp.get("/catalog")
def catalog():
    page = min(max(1, int_arg("page", 1)), MAX_PAGE)
    per_page = min(max(1, int_arg("per_page", 25)), 200)
    q = request.args.get("q") or None
    genre = request.args.get("genre") or None
    rows, total = engine().catalog.list_tracks(q=q, genre=genre, page=page, per_page=per_page)
    pages = max(1, -(-total // per_page))
    return render_template(
        "catalog.html",
        tracks=rows,
        total=total,
        page=page,
        pages=pages,
        per_page=per_page,
        q=q or "",
        genre=genre or "",
        genres=engine().catalog.genres(),
    )


@bp.get("/duplicates")
def duplicates():
    return render_template("duplicates.html", groups=engine().dupes())
