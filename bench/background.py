"""Catalog music under other sound: how `match` fares when the catalog track is not the loudest
thing in the upload.

`make eval-dupes`'s `mix_-12db` lays another recording 12 dB *under* a catalog clip. Here the
catalog clip is the bed: half of ../shared/audio is indexed (the split of bench/eval_dupes.py),
and seeded 10 s clips of indexed tracks are mixed at 0, −6 and −12 dB (RMS) under a 10 s clip of
an unindexed track (background music in an upload), or under a clip of another indexed track
(an upload holding two catalog tracks: are both listed?). Each mix is written as a WAV file and
matched end to end (`Engine.match`, the stored threshold). Writes bench/background.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from eval_dupes import _split, catalog_ids

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.encoding import write

OUT = Path(__file__).resolve().parent / "background.json"
CLIP_S = 10.0
LEVELS_DB = (0.0, -6.0, -12.0)  # the catalog clip's level against the sound on top


def _clip(samples: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, max(1, samples.size - n)))
    return np.resize(samples[start : start + n], n)


def _under(bed: np.ndarray, top: np.ndarray, db: float) -> np.ndarray:
    """`bed` at `db` (RMS) against `top`, mixed, peak-limited to full scale."""
    level = np.sqrt(np.mean(np.square(top, dtype=np.float64)) / (np.mean(np.square(bed)) + 1e-12))
    mix = top + bed * level * 10 ** (db / 20)
    return (mix / max(1.0, float(np.abs(mix).max()))).astype(np.float32)


def run(audio_dir: Path, *, trials: int = 30, seed: int = 0) -> dict:
    indexed, negatives = _split(audio_dir, quick=False)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env({}, home=Path(home)))
        engine.index_paths([audio_dir / r["path"] for r in indexed])
        track_of, twins = catalog_ids(engine, indexed)
        version_of = {t: group for group in twins.values() for t in group}
        samples = {r["path"]: load(audio_dir / r["path"]).samples for r in indexed + negatives}
        n = int(CLIP_S * engine.settings.audio.sample_rate)
        out = {"trials": trials, "clip_s": CLIP_S, "levels_db": list(LEVELS_DB)}
        for case, tops in (("under_other_music", negatives), ("two_catalog_tracks", indexed)):
            per_level = {}
            for db in LEVELS_DB:
                found = both = wrong = 0
                for k in range(trials):
                    bed_row = indexed[int(rng.integers(len(indexed)))]
                    top_row = tops[int(rng.integers(len(tops)))]
                    while top_row["path"] == bed_row["path"]:
                        top_row = tops[int(rng.integers(len(tops)))]
                    bed, top = track_of[bed_row["path"]], track_of.get(top_row["path"])
                    upload = Path(home) / f"{case}-{db}-{k}.wav"
                    mix = _under(
                        _clip(samples[bed_row["path"]], n, rng),
                        _clip(samples[top_row["path"]], n, rng),
                        db,
                    )
                    write(upload, mix, engine.settings.audio.sample_rate)
                    listed = {m.track_id for m in engine.match(upload)}
                    expected = version_of[bed] | (version_of[top] if top else set())
                    found += bool(listed & version_of[bed])
                    both += bool(top and listed & version_of[bed] and listed & version_of[top])
                    wrong += bool(listed - expected)
                per_level[f"{db:g}"] = {"bed_found": found / trials, "wrong": wrong / trials}
                if case == "two_catalog_tracks":
                    per_level[f"{db:g}"]["both_listed"] = both / trials
            out[case] = per_level
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path, nargs="?", default=Path("../shared/audio"))
    report = run(parser.parse_args().audio_dir)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
