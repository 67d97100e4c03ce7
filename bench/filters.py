"""The catalog's filters at catalog scale: its questions about genres (the tracks of a genre, a
page of them, the genre list every page of the site shows) and a text search (a page of the
tracks whose title, artist or path holds some text, and their count) at the shared catalog
padded to 10,000 and 100,000 tracks, answered from their indexes (migrations 0010 to 0013) and,
in the same run, by the row scans those replaced, kept here as the reference: for a genre every
row's predicted genre lower-cased and trimmed and every tag split, for a text every row's three
texts lower-cased and matched. On SQLite, and on a throwaway PostgreSQL cluster where one can
be started (tests/postgres.py).

A synthetic track copies a random real track's catalog row (as bench/scale.py pads a catalog,
without prints or windows: only rows are asked here) under a path of its own, and is filed
under its genres as indexing files it. Writes bench/filters.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scale import copied_rows, filed_rows, real_rows
from search import latency_ms
from sqlalchemy import func, insert, or_, select, text

from mirsearch.api import Engine
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.schema import Track, TrackGenre, filed_genres
from mirsearch.track_filters import text_matches

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import postgres  # noqa: E402  (the tests' throwaway PostgreSQL server)

OUT = Path(__file__).resolve().parent / "filters.json"
SIZES = (10_000, 100_000)  # catalog sizes padded to
CHUNK = 10_000  # synthetic rows inserted a statement at a time
CALLS = 7  # timed calls of each question (after a warm-up)
PER_PAGE = 50  # tracks of a page, as the site lists them


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


def scanned_text(catalog: Catalog, q: str) -> tuple[list[int], int]:
    """The first page of the indexed tracks whose title, artist or path holds `q`, and their
    count, as before migration 0011: every indexed row's texts lower-cased and matched (the
    reference; PostgreSQL's trigram indexes, which serve that predicate, set aside)."""
    query = select(Track).where(Track.status == "indexed", text_matches(q, trigrams=False))
    with catalog.session() as session:
        if session.bind.dialect.name == "postgresql":
            session.execute(text("SET LOCAL enable_bitmapscan = off"))
            session.execute(text("SET LOCAL enable_indexscan = off"))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        page = session.scalars(query.order_by(Track.id).limit(PER_PAGE))
        return [track.id for track in page], int(total)


def indexed_text(catalog: Catalog, q: str) -> tuple[list[int], int]:
    """What scanned_text asks, as the catalog answers it (from its text index)."""
    tracks, total = catalog.list_tracks(q=q, per_page=PER_PAGE)
    return [track.id for track in tracks], total


def text_index_bytes(catalog: Catalog) -> int:
    """Bytes of the text index: SQLite's FTS5 table's shadow tables, PostgreSQL's three trigram
    indexes."""
    with catalog.session() as session:
        if session.bind.dialect.name == "postgresql":
            names = ", ".join(f"'ix_tracks_{c}_trigrams'" for c in ("title", "artist", "path"))
            size = f"SELECT sum(pg_relation_size(oid)) FROM pg_class WHERE relname IN ({names})"
            return int(session.execute(text(size)).scalar() or 0)
        pages = "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'track_text%'"
        return int(session.execute(text(pages)).scalar() or 0)


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
    with catalog.session() as session:
        titles = session.scalars(select(Track.title).where(Track.title.is_not(None)))
        last_path = session.scalar(select(Track.path).order_by(Track.id.desc()).limit(1))
        title = min(titles).lower()
        short = [word for word in title.split() if len(word) < 3 and word.isalnum()] or ["1"]
        texts = {
            "text_of_a_title": title,
            "text_of_one_path": Path(last_path).name,
            "text_of_short_words": " ".join(short),  # no trigram: a whole word in every row
        }
    for q in texts.values():
        assert indexed_text(catalog, q) == scanned_text(catalog, q)
    indexed = {
        "tracks_of_common_genre": lambda _: catalog.track_ids_for_genres([common]),
        "tracks_of_rare_genre": lambda _: catalog.track_ids_for_genres([rare]),
        "first_page_of_genre": lambda _: catalog.list_tracks(genre=common),
        "genre_list": lambda _: catalog.genres(),
        **{name: lambda _, q=q: indexed_text(catalog, q) for name, q in texts.items()},
    }
    scanned = {
        "tracks_of_common_genre": lambda _: scanned_ids(catalog, common),
        "tracks_of_rare_genre": lambda _: scanned_ids(catalog, rare),
        "genre_list": lambda _: scanned_genres(catalog),
        **{name: lambda _, q=q: scanned_text(catalog, q) for name, q in texts.items()},
    }
    return {
        "tracks": catalog.counts().get("indexed", 0),
        "common_genre": [common, genres[0][1]],
        "rare_genre": [rare, genres[-1][1]],
        "texts": {name: [q, indexed_text(catalog, q)[1]] for name, q in texts.items()},
        "text_index_bytes": text_index_bytes(catalog),
        "indexed": {name: latency_ms(ask, CALLS) for name, ask in indexed.items()},
        "scanned": {name: latency_ms(ask, CALLS) for name, ask in scanned.items()},
    }


def points_on(audio_dir: Path, database_url: str | None, sizes: tuple[int, ...], seed: int):
    """The questions at the shared catalog and each padded size, on SQLite in a home of its own
    or on the PostgreSQL database at `database_url` (vacuumed and analysed after padding, as
    autovacuum does after a bulk insert)."""
    env = {"MIRSEARCH_DATABASE_URL": database_url} if database_url else {}
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env(env, home=Path(home) / "home"))
        engine.index_paths([audio_dir], workers=2)
        catalog = engine.catalog
        with catalog.session() as session:
            rows = real_rows(session)
        rng = np.random.default_rng(seed)
        points = [point(catalog)]
        for n_tracks in sizes:
            pad(catalog, rows, n_tracks, rng)
            if database_url:
                autocommit = catalog.engine.execution_options(isolation_level="AUTOCOMMIT")
                with autocommit.connect() as connection:
                    connection.execute(text("VACUUM ANALYZE"))
            points.append(point(catalog))
        catalog.close()
    return points


def run(audio_dir: Path, *, sizes: tuple[int, ...] = SIZES, seed: int = 0) -> dict:
    """SQLite's figures, and PostgreSQL's on a throwaway server (tests/postgres.py) where one
    can be started."""
    result: dict = {"points": points_on(audio_dir, None, sizes, seed)}
    try:
        with postgres.server() as admin, postgres.fresh_database(admin) as url:
            result["postgresql"] = {"points": points_on(audio_dir, url, sizes, seed)}
    except postgres.Unavailable as exc:
        result["postgresql"] = {"unavailable": str(exc)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    args = parser.parse_args()
    result = run(args.audio_dir)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
