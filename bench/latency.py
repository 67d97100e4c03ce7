"""Query latency at the shared catalog: `search` and `match` of 10 s clips, end to end, in one
process and through the real server under 50 concurrent clients (bench/serve.py), and `match`
of 5, 10 and 20 s clips with the model and index loaded once.

../shared/audio is indexed into a temporary home; seeded 10 s clips of its tracks are written as
WAV files, and each query is timed from the file on disk to the ranked results (decode, embed,
search; `match` reads the shifted pitch hypotheses only when the clip as it plays leaves it in
doubt), with the model and index loaded once.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

import numpy as np
import serve
from search import latency_ms

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.encoding import write
from mirsearch.files import discover

CLIP_S = 10.0


MATCH_CLIPS_S = (5.0, 10.0, 20.0)  # `match` cost per clip length


def clips(
    files: list[Path], folder: Path, *, n: int, seed: int, clip_s: float = CLIP_S
) -> list[Path]:
    """n seeded excerpts of `clip_s` seconds of the catalog's files, as WAV files in `folder`."""
    return [clip for clip, _ in excerpts(files, folder, n=n, seed=seed, clip_s=clip_s)]


def excerpts(
    files: list[Path], folder: Path, *, n: int, seed: int, clip_s: float = CLIP_S
) -> list[tuple[Path, Path]]:
    """`clips()` with the file each clip was cut from: (clip, source) pairs; each source decoded
    once, however many clips are cut from it."""
    rng = np.random.default_rng(seed)
    decoded: dict[Path, np.ndarray] = {}
    out = []
    for i, source in enumerate(rng.choice(files, n)):
        if source not in decoded:
            decoded[source] = load(source).samples
        x = decoded[source]
        length = int(clip_s * 16_000)
        start = int(rng.integers(0, max(1, x.size - length)))
        name = f"clip-{clip_s:g}s-{i:02d}.wav"
        out.append((write(folder / name, x[start : start + length], 16_000), Path(source)))
    return out


def run(audio_dir: Path, *, n_queries: int = 30, seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env({}, home=Path(home) / "home"))
        engine.index_paths([audio_dir], workers=2)
        queries = clips(discover([audio_dir]), Path(home), n=n_queries, seed=seed)
        engine.search(queries[0])  # loads the model and the index
        search = latency_ms(lambda i: engine.search(queries[i % n_queries]), n_queries)
        match = latency_ms(lambda i: engine.match(queries[i % n_queries]), n_queries)
        found = np.mean([any(m.track_id for m in engine.match(q)) for q in queries[:10]])
        per_length = {}
        for clip_s in MATCH_CLIPS_S:
            some = clips(discover([audio_dir]), Path(home), n=20, seed=seed + 1, clip_s=clip_s)
            per_length[f"{clip_s:g}s"] = latency_ms(lambda i, q=some: engine.match(q[i % 20]), 20)
        server = serve.run(engine.settings.home, queries[:5], clients=50, rounds=2)
        return {
            "server": server,
            "tracks": engine.index().n_tracks,
            "clip_s": CLIP_S,
            "search": search,
            "match": match,
            "match_per_clip_length": per_length,
            "match_pitch_hypotheses": len(engine.settings.duplicates.pitch_hypotheses_st),
            "match_found_share_of_10": round(float(found), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    print(json.dumps(run(parser.parse_args().audio_dir), indent=2))
