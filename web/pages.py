"""Server-rendered pages: search (upload, drop or record), track, catalog, duplicates."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flask import Blueprint, render_template, request
from markupsafe import Markup

from mirsearch.audio import load
from mirsearch.config import MAX_PAGE
from mirsearch.containers import visible
from mirsearch.errors import MirsearchError, NotFoundError
from mirsearch.schema import tag_beside
from web.api import engine, int_arg, playable

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)
# The genres shown as chips, the most common first; the rest fold away under "N more genres"
# (file tags of a large catalog name hundreds: 706 chips had filled the search page)
CHIPS = 24
GROUPS_A_PAGE = 50  # near-duplicate groups on a page of /duplicates
# Bidirectional classes that can turn the text after them around: right-to-left letters, and the
# embeddings, overrides and isolates a tag may hold unclosed
RIGHT_TO_LEFT = {"R", "AL", "RLE", "LRE", "RLO", "LRO", "PDF", "RLI", "LRI", "FSI", "PDI"}


@bp.get("/")
def search():
    return render_template(
        "search.html",
        genres=engine().catalog.genres(),
        chips=CHIPS,
        max_k=engine().settings.search.max_k,
    )


@bp.get("/tracks/<int:track_id>")
def track(track_id: int):
    row, waveform = engine().track(track_id), engine().catalog.waveform(track_id)
    try:
        similar = engine().similar(track_id, k=8) if row.status == "indexed" else []
    except MirsearchError as exc:  # the page still shows the track (an index being rebuilt)
        log.warning("track %d's page lists nothing similar: %s", track_id, exc)
        similar = []
    probabilities = sorted((row.genre_probabilities or {}).items(), key=lambda kv: -kv[1])
    versions = engine().catalog.get_many(engine().catalog.versions([track_id]))
    try:
        path, unplayable = playable(row), None
    except NotFoundError as exc:
        path, unplayable = None, str(exc)
    # a track indexed before the catalog kept its peaks: decoded, from the file indexed only
    decoded = _decoded_envelope(path) if waveform is None and path else None
    return render_template(
        "track.html",
        track=row,
        versions=[versions[v] for v in sorted(versions)],
        similar=similar,
        probabilities=probabilities,
        waveform=polyline(waveform.peaks if waveform else decoded),
        unplayable=unplayable,
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


def _decoded_envelope(path: Path) -> bytes | None:
    """The envelope of a track indexed before the catalog kept it (migration 0006), from its
    file (a 10-minute track: 3 s), or None if the file cannot be read."""
    from mirsearch.features import peak_envelope

    try:
        return peak_envelope(load(path).samples)
    except MirsearchError:
        return None


def _page_of(fetch: Callable[[int], tuple[list, int]], per_page: int) -> tuple[list, int, int, int]:
    """The page a page of the site asks for (`page`: past the end, an old link or a typed
    number, the last one; the JSON API refuses it instead), from `fetch(page)` → (items,
    total): its items, the total, that page and how many pages there are."""
    page = min(max(1, int_arg("page", 1)), MAX_PAGE)
    items, total = fetch(page)
    pages = max(1, -(-total // per_page))
    if page > pages:
        page = pages
        items, total = fetch(page)
    return items, total, page, pages


@bp.get("/catalog")
def catalog():
    per_page = min(max(1, int_arg("per_page", 25)), 200)
    q = request.args.get("q") or None
    genre = request.args.get("genre") or None
    genres = engine().catalog.genres()
    rows, total, page, pages = _page_of(
        lambda p: engine().catalog.list_tracks(q=q, genre=genre, page=p, per_page=per_page),
        per_page,
    )
    return render_template(
        "catalog.html",
        tracks=rows,
        total=total,
        page=page,
        pages=pages,
        per_page=per_page,
        q=q or "",
        genre=(genre or "").strip().lower(),  # as the genre list names them
        genres=genres,
        unknown_genre=genre is not None and genre.strip().lower() not in dict(genres),
    )


@bp.get("/duplicates")
def duplicates():
    reports, total, page, pages = _page_of(
        lambda p: engine().dupes_page(page=p, per_page=GROUPS_A_PAGE), GROUPS_A_PAGE
    )
    groups = [{**g, "by_id": {t["track_id"]: t for t in g["tracks"]}} for g in reports]
    return render_template(
        "duplicates.html",
        groups=groups,
        skipped=(page - 1) * GROUPS_A_PAGE,
        total=total,
        page=page,
        pages=pages,
    )


@bp.app_template_filter()
def name(track) -> str:
    """A track (a catalog row or a result's dict) as pages name it: its title, else its file (a
    title of zero-width spaces only had made a link no one could see or click)."""
    title = track["title"] if isinstance(track, dict) else track.title
    path = track["path"] if isinstance(track, dict) else track.path
    return title if visible(title) else path.rsplit("/", 1)[-1]


@bp.app_template_filter()
def genre_label(track) -> Markup:
    """A track's genre (a catalog row or a result's dict) as the search page labels a hit: the
    model's, and the file's tag beside it when it files the track under another ('classical ·
    tagged Romantic Classical'; a genre filter keeps either, and a row had not said which)."""
    genre = track["genre"] if isinstance(track, dict) else track.genre
    tagged = tag_beside(
        genre, track.get("tag_genre") if isinstance(track, dict) else track.tag_genre
    )
    if tagged is None:
        return Markup("<bdi>{}</bdi>").format(genre or "")
    if not genre:
        return Markup("tagged <bdi>{}</bdi>").format(tagged)
    return Markup("<bdi>{}</bdi> · tagged <bdi>{}</bdi>").format(genre, tagged)


@bp.app_template_filter()
def isolated(text: str) -> str:
    """Catalog text where no element can hold it (a <title>, an <option>) between FIRST STRONG
    ISOLATE and POP DIRECTIONAL ISOLATE, as <bdi> does elsewhere: a right-to-left override in a
    tag then reverses the tag only, not the count or the site's name after it. Text with no
    right-to-left letter or direction control is left as it is."""
    if not any(unicodedata.bidirectional(c) in RIGHT_TO_LEFT for c in text):
        return text
    return f"\u2068{text}\u2069"


@bp.app_template_filter()
def pace(speed: float, other: str) -> Markup:
    """'plays 2 % faster than <other>' for a version playing `speed` times as fast as `other`
    (the CLI's `dupes` prints the speed itself: 1.02), or 'plays at the same speed as'."""
    percent = round(100 * (speed - 1), 1)
    if not percent:
        return Markup("plays at the same speed as {}").format(other)
    faster = "faster" if percent > 0 else "slower"
    return Markup("plays {:g} % {} than {}").format(abs(percent), faster, other)
