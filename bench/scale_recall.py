"""Near-duplicate recall at scale, by window index kind: does `match` still find altered copies
when the catalog is large enough for an approximate window index, and at what cost?

The catalog half of `make eval-dupes` (bench/eval_dupes.py's split) is indexed and queried as it
is (the reference), then padded with synthetic tracks to `--tracks` (bench/scale.py's Padding:
windows near real ones, never copies of them). The same padded windows are then served as each
kind of window index in turn, and the same altered clips of the catalog's real tracks (the
transforms where recall is lowest, 5 and 10 s) are matched against each: recall at the model's
threshold, the source's mean score, p50/p95 per query, the window index's bytes and build time.
Run `python bench/scale_recall.py AUDIO_DIR [--tracks N]`; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from eval_dupes import _split, queries
from scale import STORE, Padding

from mirsearch.api import Engine
from mirsearch.config import Settings

log = logging.getLogger("bench.scale_recall")

TRACKS = 10_000  # the padded catalog: ~1.2 M windows
KINDS = ("sq8", "hnsw", "ivfpq")  # sq8 (exact) first: the reference
TRANSFORMS = ["none", "noise_snr10", "mix_-12db", "reverb", "pitch_-1st", "tempo_+5%"]
CLIPS = {"5s": (5.0, 1), "10s": (10.0, 1)}


def run(audio_dir: Path, *, n_tracks: int = TRACKS, seed: int = 0) -> dict:
    indexed, negatives = _split(audio_dir, quick=False)
    catalog = {row["path"] for row in indexed}
    clips = [
        clip
        for clip in queries(
            indexed + negatives,  # the sound mixed in comes from the tracks outside
            negatives,
            audio_dir,
            seed=seed,
            quick=False,
            max_whole_s=0.0,
            transforms=TRANSFORMS,
            clips=CLIPS,
        )
        if clip[0]["path"] in catalog
    ]
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env({}, home=Path(home)))
        engine.index_paths([audio_dir / r["path"] for r in indexed], workers=2)
        track_of = {Path(t.path).name: t.id for t in engine.catalog.list_tracks(per_page=10_000)[0]}
        threshold = engine.match_threshold
        result = {
            "queries": len(clips),
            "transforms": TRANSFORMS,
            "threshold": threshold,
            "catalog": {
                "tracks": len(indexed),
                "windows": engine.index().ntotal_windows,
                **_matched(engine, clips, track_of, threshold),
            },
        }
        padding = Padding(engine, seed=seed)
        padding.grow_to(n_tracks, kind=STORE)  # each kind is built and served below
        result |= {"tracks": n_tracks, "windows": padding.windows.ntotal}
        for kind in KINDS:
            started = time.perf_counter()
            windows = (
                padding.windows if kind == padding.windows.kind else padding.windows.rebuilt(kind)
            )
            build_s = time.perf_counter() - started
            padding.serve(windows)
            with tempfile.NamedTemporaryFile() as f:
                windows.write(Path(f.name))
                index_bytes = Path(f.name).stat().st_size
            result[kind] = {
                "build_s": round(build_s, 1),
                "window_index_bytes": index_bytes,
                **_matched(engine, clips, track_of, threshold),
            }
            log.info("%s: %s", kind, result[kind])
        return result


def _matched(engine: Engine, clips: list, track_of: dict[str, int], threshold: float) -> dict:
    """Recall per transform and clip length, and per-query time, over `clips`."""
    engine.match_candidates(clips[0][3])  # the new index loaded before the clock starts
    found, scores, times = defaultdict(list), [], defaultdict(list)
    for row, clip_name, transform, samples in clips:
        started = time.perf_counter()
        answer = engine.match_candidates(samples)
        times[clip_name].append(1000 * (time.perf_counter() - started))
        truth = track_of[Path(row["path"]).name]
        score = max((m.score for m in answer if m.track_id == truth), default=0.0)
        found[transform].append(score >= threshold)
        scores.append(score)
    return {
        "recall": round(float(np.mean([h for hits in found.values() for h in hits])), 4),
        "recall_by_transform": {t: round(float(np.mean(h)), 3) for t, h in found.items()},
        "source_score_mean": round(float(np.mean(scores)), 4),
        "ms": {
            clip: {
                "p50": round(float(np.percentile(t, 50)), 1),
                "p95": round(float(np.percentile(t, 95)), 1),
            }
            for clip, t in times.items()
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--tracks", type=int, default=TRACKS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(json.dumps(run(args.audio_dir, n_tracks=args.tracks), indent=2))
