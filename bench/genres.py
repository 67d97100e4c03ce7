"""Genre filters at catalog scale: the catalog's questions about genres (the tracks of a genre,
a page of them, the genre list every page of the site shows) at the shared catalog padded to
10,000 and 100,000 tracks, answered from the track_genres index (migration 0010) and, in the
same run, by the row scan it replaced (every row's predicted genre lower-cased and trimmed, every
tag split), kept here as the reference.

A synthetic track copies a random real track's catalog row (as bench/scale.py pads a catalog,
without prints or windows: only rows are asked here) and is filed under its genres as indexing
files it. Writes bench/genres.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from scale import copied_rows, filed_rows, real_rows
from search import latency_ms
from sqlalchemy import func, insert, or_, select

from mirsearch.api import Engine
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.schema import Track, TrackGenre, filed_genres

OUT = Path(__file__).resolve().parent / "genres.json"
SIZES = (10_000, 100_000)  # catalog sizes padded to
CHUNK = 10_000  # synthetic rows inserted a statement at a time
CALLS = 7  # timed calls of each question (after a warm-up)


def scanned_ids(catalog: Catalog, genre: str) -> set[int]:
    """The tracks of `genre` found as before migration 0010: every indexed row's genre and tag
    read (the reference)."""
    spaced = func.lower(func.trim(Track.tag_genre))
    tagged = ";" + func.replace(func.replace(spaced, "; ", ";"), " ;", ";") + ";"
    query = select(Track.id).where(
        Track.status == "indexed",
        or_(func.lower(func.trim(Track.genre)) == genre, tagged.contains(f";{genre};")),
    )
    with catalog.session() as session:
        return set(session.scalars(query))


def scanned_genres(catalog: Catalog) -> list[tuple[str, int]]:
    """The genre list as before migration 0010: every indexed row read and its tag split."""
    query = select(Track.id, Track.genre, Track.tag_genre).where(Track.status == "indexed")
    counts: dict[str, int] = {}
    with catalog.session() as session:
        for _, genre, tag_genre in session.execute(query):
            for name in filed_genres(genre, tag_genre):
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


def pad(catalog: Catalog, rows: list[dict], n_tracks: int, rng: np.random.Generator) -> None:
    """Add synthetic copies of `rows` until the catalog holds n_tracks tracks."""
    with catalog.session() as session, session.begin():
        first = int(session.scalar(select(func.max(Track.id)))) + 1
        have = int(session.scalar(select(func.count()).select_from(Track)))
        ids = range(first, first + n_tracks - have)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            models = [rows[i] for i in rng.integers(0, len(rows), len(chunk))]
            session.execute(insert(Track), copied_rows(chunk, models))
            session.execute(insert(TrackGenre), filed_rows(chunk, models))


def point(catalog: Catalog) -> dict:
    """The questions' p50 / p95, from the index and by the scan, at the catalog's size."""
    genres = catalog.genres()
    common, rare = genres[0][0], genres[-1][0]
    assert catalog.track_ids_for_genres([common]) == scanned_ids(catalog, common)
    assert genres == scanned_genres(catalog)
    indexed = {
        "tracks_of_common_genre": lambda _: catalog.track_ids_for_genres([common]),
        "tracks_of_rare_genre": lambda _: catalog.track_ids_for_genres([rare]),
        "first_page_of_genre": lambda _: catalog.list_tracks(genre=common),
        "genre_list": lambda _: catalog.genres(),
    }
    scanned = {
        "tracks_of_common_genre": lambda _: scanned_ids(catalog, common),
        "tracks_of_rare_genre": lambda _: scanned_ids(catalog, rare),
        "genre_list": lambda _: scanned_genres(catalog),
    }
    return {
        "tracks": catalog.counts().get("indexed", 0),
        "common_genre": [common, genres[0][1]],
        "rare_genre": [rare, genres[-1][1]],
        "indexed": {name: latency_ms(ask, CALLS) for name, ask in indexed.items()},
        "scanned": {name: latency_ms(ask, CALLS) for name, ask in scanned.items()},
    }


def run(audio_dir: Path, *, sizes: tuple[int, ...] = SIZES, seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env({}, home=Path(home) / "home"))
        engine.index_paths([audio_dir], workers=2)
        catalog = engine.catalog
        with catalog.session() as session:
            rows = real_rows(session)
        rng = np.random.default_rng(seed)
        points = [point(catalog)]
        for n_tracks in sizes:
            pad(catalog, rows, n_tracks, rng)
            points.append(point(catalog))
        catalog.close()
    return {"points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    args = parser.parse_args()
    result = run(args.audio_dir)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
