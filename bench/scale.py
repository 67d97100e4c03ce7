"""Query cost at scale: `Engine.match` of real 5, 10 and 20 s clips, model and index loaded once,
at the shared catalog and with it padded by synthetic tracks to 10,000 and 100,000, with the
footprint (window index and catalog database bytes) at each size, and `Engine.search` of the
10 s clips filtered to the most common genre and to a rare one (the filter applied to a wider
search's hits, as by default, and inside FAISS with the genre's window ids listed).

The shared catalog is indexed into a temporary home, then padded in place through the storage
code a real catalog uses: catalog rows and verification prints inserted in one transaction that
saves the padded vector index as the next generation (as the indexer commits a batch), so
`Engine.match` reloads it and searches it exactly as it would a catalog of that size.

A synthetic track copies a random real track's catalog row (its length, genre, descriptors; filed
under its genres as indexing files it) and print; its windows are real windows drawn at random from
the whole catalog, in no time order (so they line up with no query), each moved off its seed to the
cosine that real windows have with their nearest window of another track (the median over the
catalog): near the real ones, as other music is, never copies of them. The padded windows are kept
in an exact 8-bit index and served at each size as the kind the default settings give a catalog of
that size (`auto`: exact "sq8" up to IndexConfig.exact_max_vectors, then IVF-PQ trained on a sample
of them), its build timed with the padding; bench/scale_recall.py compares the kinds' recall on
altered clips.

At each size a fresh process opens the index as a query process does (mapped: its vectors left in
the file) and read whole into memory, and reports the seconds that took and the memory it holds
privately after a search: what every further worker or server process adds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import sqlite3
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from latency import MATCH_CLIPS_S, excerpts
from search import latency_ms
from sqlalchemy import insert, select, update

from mirsearch.api import Engine
from mirsearch.config import IndexConfig, Settings
from mirsearch.files import discover
from mirsearch.generations import path_of, prune_generations
from mirsearch.index import VectorIndex, window_ids
from mirsearch.index_kinds import normalise, window_kind
from mirsearch.index_meta import IndexMeta
from mirsearch.neighbours import IdIndex
from mirsearch.schema import (
    IndexState,
    Track,
    TrackGenre,
    TrackPrint,
    TrackWaveform,
    filed_genres,
)

log = logging.getLogger("bench.scale")

SIZES = (10_000, 100_000)  # catalog sizes simulated beyond the shared catalog
CLIPS = 10  # clips per length ...
FEWER_CLIPS_ABOVE = 50_000  # ... and half as many above this many tracks (seconds per match)
STORE = "sq8"  # the padded windows, exact, from which each size's index is built
CHUNK = 2_000  # synthetic tracks made and inserted at a time
SKIPPED_COLUMNS = {"id", "path", "sha256", "duplicate_of", "duplicate_evidence"}


def neighbour_cosine(index: VectorIndex, *, k: int = 64) -> float:
    """The median cosine of a real window with its nearest window of another track."""
    nearest = []
    for track_id in index.track_ids():
        vectors = index.track_windows(int(track_id))
        scores, tracks, _ = index.search_windows(vectors, k)
        other = np.where(tracks != track_id, scores, -np.inf).max(axis=1)
        nearest.append(other[np.isfinite(other)])
    return float(np.median(np.concatenate(nearest)))


def synthetic_windows(rng, pool: np.ndarray, n: int, cosine: float) -> np.ndarray:
    """n unit vectors, each a random window of `pool` moved to `cosine` with it."""
    seeds = pool[rng.integers(0, len(pool), n)]
    noise = rng.standard_normal(seeds.shape, dtype=np.float32)
    noise -= (noise * seeds).sum(axis=1, keepdims=True) * seeds  # orthogonal to its seed
    return normalise(cosine * seeds + np.sqrt(1 - cosine**2) * normalise(noise))


class Padding:
    """A catalog's real tracks (rows, prints, waveforms, windows) and the synthetic tracks added
    to it: the windows (STORE) and track vectors grow in memory; each size is saved as a new
    generation."""

    def __init__(self, engine: Engine, *, seed: int):
        self.engine, self.rng = engine, np.random.default_rng(seed)
        index = engine.index()
        self.meta, self.config = index.meta, IndexConfig()
        with engine.catalog.session() as session:
            self.rows = real_rows(session)
            self.prints = {p.track_id: p for p in session.scalars(select(TrackPrint))}
            self.waveforms = {w.track_id: w for w in session.scalars(select(TrackWaveform))}
        self.windows = IdIndex.create(self.meta.dim, STORE, self.config)
        self.tracks = IdIndex.create(self.meta.dim, "flat", self.config)
        real = []
        for row in self.rows:
            vectors = index.track_windows(row["id"])
            self.windows.add(window_ids(row["id"], len(vectors)), vectors)
            self.tracks.add(np.array([row["id"]]), index.track_vector(row["id"])[None])
            real.append(vectors)
        self.pool = np.concatenate(real)
        self.cosine = neighbour_cosine(index)
        self.next_id = max(r["id"] for r in self.rows) + 1

    def grow_to(self, n_tracks: int, *, kind: str | None = None) -> float:
        """Pad the catalog to n_tracks tracks in one transaction and generation, its windows served
        as `kind` (default: the kind the default settings give that many); seconds taken."""
        started = time.perf_counter()
        last = self.next_id + n_tracks - self.tracks.ntotal
        with self.engine.catalog.session() as session, session.begin():
            for first in range(self.next_id, last, CHUNK):
                self._add_chunk(session, list(range(first, min(first + CHUNK, last))))
            kind = kind or window_kind(self.config, self.windows.ntotal)
            served = self.windows if kind == STORE else self.windows.rebuilt(kind)
            generation = self._commit(session, served)
        prune_generations(self.engine.settings.index_dir, keep=generation)
        self.next_id = last
        return time.perf_counter() - started

    def serve(self, windows: IdIndex) -> None:
        """Make `windows` (these windows in another kind of index) the catalog's window index."""
        with self.engine.catalog.session() as session, session.begin():
            generation = self._commit(session, windows)
        prune_generations(self.engine.settings.index_dir, keep=generation)

    def _commit(self, session, windows: IdIndex) -> int:
        """Save the index as the next generation, in the transaction that makes it current."""
        generation = session.get(IndexState, 1).generation + 1
        index = VectorIndex(self.meta, self.config, windows, self.tracks)
        index.save(self.engine.settings.index_dir, generation)
        session.execute(update(IndexState).values(generation=generation))
        return generation

    def _add_chunk(self, session, ids: list[int]) -> None:
        """Rows, prints and vectors of the synthetic tracks `ids`, each like a random real one."""
        models = [self.rows[i] for i in self.rng.integers(0, len(self.rows), len(ids))]
        prints = []
        for track_id, model in zip(ids, models, strict=True):
            stored = self.prints[model["id"]]
            prints.append(
                {
                    "track_id": track_id,
                    "bands": stored.bands,
                    "data": stored.data,
                    "format": stored.format,
                }
            )
        session.execute(insert(Track), copied_rows(ids, models))
        session.execute(insert(TrackGenre), filed_rows(ids, models))
        session.execute(insert(TrackPrint), prints)
        waveforms = [
            {"track_id": t, "peaks": shape.peaks, "quiet": shape.quiet}
            for t, shape in zip(ids, (self.waveforms[m["id"]] for m in models), strict=True)
        ]
        session.execute(insert(TrackWaveform), waveforms)
        counts = [m["n_windows"] for m in models]
        vectors = synthetic_windows(self.rng, self.pool, sum(counts), self.cosine)
        ranges = [window_ids(t, n) for t, n in zip(ids, counts, strict=True)]
        self.windows.add(np.concatenate(ranges), vectors)
        starts = np.cumsum([0, *counts[:-1]])
        sums = np.add.reduceat(vectors, starts, axis=0)
        self.tracks.add(np.array(ids), sums / np.array(counts, dtype=np.float32)[:, None])


def real_rows(session) -> list[dict]:
    """Every indexed track's catalog row, its columns by name: what synthetic tracks copy."""
    indexed = session.scalars(select(Track).where(Track.status == "indexed"))
    return [{c.key: getattr(r, c.key) for c in Track.__table__.columns} for r in indexed]


def copied_rows(ids: list[int] | range, models: list[dict]) -> list[dict]:
    """The catalog rows of synthetic tracks `ids`, each a copy of the real row it is modelled on
    under its own id and path (SKIPPED_COLUMNS left out)."""
    return [
        {k: v for k, v in model.items() if k not in SKIPPED_COLUMNS}
        | {"id": t, "path": f"synthetic/{t}.wav"}
        for t, model in zip(ids, models, strict=True)
    ]


def filed_rows(ids: list[int] | range, models: list[dict]) -> list[dict]:
    """The track_genres rows of synthetic tracks `ids`, each filed under the genres of the real
    row it copies, as indexing files a track."""
    return [
        {"track_id": t, "genre": name}
        for t, model in zip(ids, models, strict=True)
        for name in filed_genres(model["genre"], model["tag_genre"])
    ]


def footprint(engine: Engine) -> dict:
    """Bytes on disk of the current window index and of the catalog database (checkpointed)."""
    generation = engine.catalog.index_state().generation
    index_dir = engine.settings.index_dir
    catalog_db = engine.settings.home / "catalog.db"
    with sqlite3.connect(catalog_db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "window_index_bytes": path_of(index_dir, "windows", generation).stat().st_size,
        "track_index_bytes": path_of(index_dir, "tracks", generation).stat().st_size,
        "catalog_db_bytes": catalog_db.stat().st_size,
    }


def load_cost(engine: Engine) -> dict:
    """For the current index, mapped (as `Engine` opens it) and read into memory, in a fresh
    process each: seconds to load it, and the private memory held once a search has run."""
    index = engine.index()
    generation = engine.catalog.index_state().generation
    queries = index.track_windows(int(index.track_ids()[0]))[:8]
    cost = {}
    for mode, mapped in (("mapped", True), ("in_memory", False)):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as fresh:
            probe = fresh.submit(
                _load_probe, engine.settings.index_dir, generation, index.meta, queries, mapped
            )
            cost[mode] = probe.result()
    return cost


def _load_probe(
    directory: Path, generation: int, expect: IndexMeta, queries: np.ndarray, mapped: bool
) -> dict:
    before = _private_mb()
    started = time.perf_counter()
    index = VectorIndex.load(directory, generation, expect=expect, mapped=mapped)
    load_s = time.perf_counter() - started
    index.search_windows(queries, 10)
    return {"load_s": round(load_s, 2), "private_mb": round(_private_mb() - before, 1)}


def _private_mb() -> float:
    """This process's private dirty memory (anonymous pages: no other process can share them)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Private_Dirty line in /proc/self/smaps_rollup")


def match_cost(engine: Engine, queries: dict[str, list[Path]], sources: dict) -> dict:
    """p50 / p95 of `Engine.match` per clip length, and how often the source track comes first."""
    out = {}
    for length, some in queries.items():
        answers: list = [None] * len(some)

        def call(i: int, some=some, answers=answers) -> None:
            answers[i % len(some)] = engine.match(some[i % len(some)])

        timing = latency_ms(call, len(some))
        hits = [
            bool(a) and a[0].path == str(sources[q]) for a, q in zip(answers, some, strict=True)
        ]
        out[length] = timing | {"source_first": round(float(np.mean(hits)), 2)}
    return out


def run(
    audio_dir: Path, *, sizes: tuple[int, ...] = SIZES, n_clips: int = CLIPS, seed: int = 1
) -> dict:
    """Match cost and footprint at the shared catalog and at each of `sizes` tracks."""
    files = discover([audio_dir])
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        engine = Engine(Settings.from_env({}, home=scratch / "home"))
        engine.index_paths([audio_dir], workers=2)
        queries, sources = {}, {}
        for clip_s in MATCH_CLIPS_S:
            pairs = excerpts(files, scratch, n=n_clips, seed=seed, clip_s=clip_s)
            queries[f"{clip_s:g}s"] = [clip for clip, _ in pairs]
            sources |= dict(pairs)
        points = [_point(engine, queries, sources, build_s=None)]
        padding = Padding(engine, seed=seed)
        for n_tracks in sizes:
            build_s = padding.grow_to(n_tracks)
            fewer = {k: v[: max(3, n_clips // 2)] for k, v in queries.items()}
            some = fewer if n_tracks > FEWER_CLIPS_ABOVE else queries
            points.append(_point(engine, some, sources, build_s=build_s))
            log.info("%d tracks: %s", n_tracks, points[-1])
        return {
            "synthetic_window_cosine": round(padding.cosine, 3),
            "points": points,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def genre_search_cost(engine: Engine, clips: list[Path]) -> dict:
    """p50 / p95 of `Engine.search` of `clips` unfiltered and filtered to a genre, for the most
    common genre and the rarest whose windows are more than an exact search takes: the filter
    applied to a wider search's hits (the default) and inside FAISS, its tracks' window ids
    listed (IndexConfig.post_filter_max_k = 0, set on the loaded index); and the share of the
    ten results the two filtered searches have in common (the same on an exact index; an
    approximate one visits other cells)."""
    index = engine.index()
    default = index.config
    counted = engine.catalog.genres()
    windows = {
        genre: sum(index.n_windows(t) for t in engine.catalog.track_ids_for_genres([genre]))
        for genre, _ in counted
    }
    broad = [g for g, _ in counted if windows[g] > default.exact_filter_max_vectors]
    asked = list(dict.fromkeys([counted[0][0], *broad[-1:]]))
    out: dict = {
        "unfiltered": latency_ms(lambda i: engine.search(clips[i % len(clips)]), len(clips)),
        "genres": [],
    }
    for genre in asked:
        row: dict = {
            "genre": genre,
            "genre_tracks": dict(counted)[genre],
            "window_share": round(windows[genre] / index.ntotal_windows, 4),
        }
        results: dict[str, list[set[int]]] = {}
        for name, config in (
            ("applied_to_hits", default),
            ("inside_faiss", dataclasses.replace(default, post_filter_max_k=0)),
        ):
            index.config = config
            row[name] = latency_ms(
                lambda i, g=genre: engine.search(clips[i % len(clips)], genres=[g]), len(clips)
            )
            found = [engine.search(c, genres=[genre]) for c in clips]
            results[name] = [{r.track_id for r in hits} for hits in found]
        index.config = default
        shared = [
            len(a & b) / max(len(a | b), 1)
            for a, b in zip(results["applied_to_hits"], results["inside_faiss"], strict=True)
        ]
        row["same_results"] = round(float(np.mean(shared)), 3)
        out["genres"].append(row)
    return out


def _point(engine: Engine, queries: dict, sources: dict, *, build_s: float | None) -> dict:
    index = engine.index()
    point = {
        "tracks": index.n_tracks,
        "windows": index.ntotal_windows,
        "window_index_kind": index.meta.kind,
        "clips_per_length": len(next(iter(queries.values()))),
    }
    if build_s is not None:
        point["build_s"] = round(build_s, 1)
    return point | {
        "match": match_cost(engine, queries, sources),
        "genre_search": genre_search_cost(engine, queries["10s"]),
        "index_load": load_cost(engine),
        **footprint(engine),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--clips", type=int, default=CLIPS, help="clips per length")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(json.dumps(run(args.audio_dir, sizes=tuple(args.sizes), n_clips=args.clips), indent=2))
