"""Search benchmark on synthetic clustered vectors: query latency, build time, memory and recall.

Two parts. Windows: `search.rank` for one 20-window query over 10,000 tracks of 120 windows
(1.2 M window vectors), with the exact index (float32, then 8-bit "sq8") and with HNSW, and
`match` without the network (one such query per pitch hypothesis, each aligned per track and its
best lines checked on synthetic prints; embedding the clip excluded).
Tracks: 1,000,000 track vectors in a track-level index, flat vs HNSW vs IVF-PQ. Recall@10 is
measured against the exact index.
Run `python bench/search.py [--small]`; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from mirsearch import fingerprint
from mirsearch.config import DuplicateConfig, FeatureConfig, IndexConfig
from mirsearch.duplicates import Reading, candidates
from mirsearch.index import WINDOW_BITS, VectorIndex
from mirsearch.index_kinds import normalise
from mirsearch.index_meta import IndexMeta
from mirsearch.neighbours import IdIndex
from mirsearch.search import rank

log = logging.getLogger("bench.search")

QUERY_WINDOWS = 20  # a 10 s clip at the 0.5 s query hop
QUERY_HOP_S = 0.5
TRACK_CONFIG = IndexConfig(ivf_nlist=1024, ivf_nprobe=32, pq_m=32)  # 1 M vectors: 1,024 cells
SWEEPS = {  # search settings tried on the built track-level indexes
    "hnsw": [("hnsw_ef_search", ef) for ef in (64, 256, 512)],
    "ivfpq": [("ivf_nprobe", 64), ("ivf_refine_k_factor", 16)],
}


def clustered(rng, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    """n unit vectors around randomly chosen centres (genres, styles), noise of norm ~spread."""
    noise = rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
    return normalise(
        centres[rng.integers(0, len(centres), n)] + spread / centres.shape[1] ** 0.5 * noise
    )


def excerpt(rng, windows: np.ndarray, *, start_s: float, hop_s: float = 1.5) -> np.ndarray:
    """QUERY_WINDOWS windows at the query hop from start_s, interpolated, with a little noise."""
    position = (start_s + np.arange(QUERY_WINDOWS) * QUERY_HOP_S) / hop_s
    below = np.floor(position).astype(int)
    after = (position - below)[:, None].astype(np.float32)
    mixed = (1 - after) * windows[below] + after * windows[below + 1]
    return normalise(mixed + rng.standard_normal(mixed.shape, dtype=np.float32) * 0.02)


def latency_ms(call: Callable[[int], object], n: int) -> dict[str, float]:
    """p50 and p95 wall time of `call(i)` over n calls, after one warm-up call."""
    call(0)
    times = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
    }


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    rows = [len(set(f[:10]) & set(t[:10]) - {-1}) / 10 for f, t in zip(found, truth, strict=True)]
    return round(float(np.mean(rows)), 4)


def nearest_windows(index: VectorIndex, queries: np.ndarray) -> np.ndarray:
    """Window ids of each query's 10 nearest windows."""
    _, track_ids, window_nos = index.search_windows(queries, 10)
    return (track_ids << WINDOW_BITS) | window_nos


def file_bytes(index: IdIndex) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.faiss"
        index.write(path)
        return path.stat().st_size


def window_level(rng, *, n_tracks: int, n_windows: int, dim: int, n_queries: int) -> dict:
    """rank() over n_tracks × n_windows window vectors: exact, then HNSW."""
    centres = normalise(rng.standard_normal((256, dim), dtype=np.float32))
    track_centres = clustered(rng, centres, n_tracks, 0.8)
    meta = IndexMeta.for_model(dim=dim, model_hash="synthetic", feature_config={}, hop_s=1.5)
    index = VectorIndex.create(meta, IndexConfig(kind="flat"))
    started = time.perf_counter()
    for track_id, centre in enumerate(track_centres, start=1):
        noise = rng.standard_normal((n_windows, dim), dtype=np.float32) * (0.6 / dim**0.5)
        index.add(track_id, centre + noise)
    build_s = time.perf_counter() - started
    sources = rng.integers(1, n_tracks + 1, n_queries)
    queries = [excerpt(rng, index.track_windows(int(t)), start_s=45.25) for t in sources]
    offsets_s = np.arange(QUERY_WINDOWS) * QUERY_HOP_S
    probe = np.concatenate(queries)[:200]

    def rank_all() -> np.ndarray:
        return np.array(
            [[h.track_id for h in rank(index, q, offsets_s, q.mean(axis=0), k=10)] for q in queries]
        )

    def rank_one(i: int) -> list:
        return rank(index, queries[i], offsets_s, queries[i].mean(axis=0), k=10)

    genre = set(rng.choice(np.arange(1, n_tracks + 1), n_tracks // 10, replace=False).tolist())

    def rank_filtered(i: int) -> list:  # a genre filter allowing a tenth of the catalog
        return rank(
            index, queries[i], offsets_s, queries[i].mean(axis=0), k=10, allowed_tracks=genre
        )

    n_hypotheses = len(DuplicateConfig().pitch_hypotheses_st)
    hypotheses = [  # what `match` searches: the clip embedded under each pitch hypothesis
        [
            normalise(q + rng.standard_normal(q.shape, dtype=np.float32) * 0.01)
            for _ in range(n_hypotheses)
        ]
        for q in queries
    ]

    # Verification prints: a pool of random ones shared round-robin (10,000 distinct prints would
    # take gigabytes here); the query's is its source's at the excerpt's place.
    config = FeatureConfig()
    print_fps = fingerprint.print_frames_per_s(config)
    bands = len(fingerprint._kept_bands(config)) // fingerprint.BAND_GROUP
    shape = (bands, int((n_windows * 1.5 + 3) * print_fps))
    pool = [  # as the catalog hands them out: decoded from the stored bytes
        fingerprint.decode(fingerprint.encode(rng.normal(0.0, 8.0, shape).astype(np.float32)))
        for _ in range(64)
    ]
    first = int(45.25 * print_fps)
    clip_frames = int((QUERY_WINDOWS * QUERY_HOP_S + 3) * print_fps)
    query_prints = [pool[t % len(pool)][:, first : first + clip_frames] for t in sources]

    def prints(track_ids) -> dict:
        return {t: pool[t % len(pool)] for t in track_ids}

    def match_one(i: int) -> list:
        readings = [Reading(h, offsets_s, query_prints[i]) for h in hypotheses[i]]
        return candidates(index, readings, prints)

    exact_hits, exact_windows = rank_all(), nearest_windows(index, probe)
    result = {"tracks": n_tracks, "windows": index.ntotal_windows, "dim": dim}
    result["flat"] = {
        "build_s": round(build_s, 2),
        **latency_ms(rank_one, n_queries),
        "filtered": latency_ms(rank_filtered, n_queries // 2),
        "match": latency_ms(match_one, n_queries // 2),
        "source_track_first": float(np.mean(exact_hits[:, 0] == sources)),
    }
    for kind in ("sq8", "hnsw"):  # the same windows, rebuilt: recall against the exact run
        started = time.perf_counter()
        index.rebuild(kind)
        build_s = time.perf_counter() - started
        result[kind] = {
            "build_s": round(build_s, 2),
            **latency_ms(rank_one, n_queries),
            "filtered": latency_ms(rank_filtered, n_queries // 2),
            "match": latency_ms(match_one, n_queries // 2),
            "window_recall_at_10": recall_at_10(nearest_windows(index, probe), exact_windows),
            "rank_recall_at_10": recall_at_10(rank_all(), exact_hits),
        }
    return result


def track_level(rng, *, n: int, dim: int, n_queries: int) -> dict:
    """A track-level index of n vectors: flat, HNSW and IVF-PQ."""
    centres = normalise(rng.standard_normal((1024, dim), dtype=np.float32))
    vectors = clustered(rng, centres, n, 0.8)
    queries = clustered(rng, centres, n_queries, 0.8)
    ids = np.arange(n, dtype=np.int64)
    result: dict = {"vectors": n, "dim": dim}
    truth = None
    for kind in ("flat", "hnsw", "ivfpq"):
        started = time.perf_counter()
        index = IdIndex.build(kind, ids, vectors, TRACK_CONFIG)
        build_s = time.perf_counter() - started
        _, found = index.search(queries, 10)
        truth = found if truth is None else truth
        result[kind] = {
            "build_s": round(build_s, 2),
            "bytes_per_track": round(file_bytes(index) / n, 1),
            **latency_ms(lambda i, index=index: index.search(queries[i], 10), n_queries),
            "recall_at_10": recall_at_10(found, truth),
        }
        for name, value in SWEEPS.get(kind, []):
            index.config = replace(TRACK_CONFIG, **{name: value})
            result[kind][f"{name}={value}"] = {
                **latency_ms(lambda i, index=index: index.search(queries[i], 10), n_queries),
                "recall_at_10": recall_at_10(index.search(queries, 10)[1], truth),
            }
        log.info("tracks %s: %s", kind, result[kind])
        del index
    return result


def run(*, small: bool = False, seed: int = 0) -> dict:
    """Every figure of the benchmark; `small` shrinks it 10× for a smoke test."""
    rng = np.random.default_rng(seed)
    scale = 10 if small else 1
    started = time.perf_counter()
    windows = window_level(rng, n_tracks=10_000 // scale, n_windows=120, dim=128, n_queries=50)
    log.info("windows: %s", windows)
    tracks = track_level(rng, n=1_000_000 // scale, dim=128, n_queries=200)
    return {
        "windows": windows,
        "tracks": tracks,
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10× fewer tracks (a smoke test)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(json.dumps(run(small=args.small), indent=2))
