"""Copies at another speed, tempo or key: how far from the catalog's `match` still finds a copy,
and what reading uploads further in key and at other speeds costs the uploads of other music.

Half of ../shared/audio is indexed (the split of bench/eval_dupes.py). TRIALS seeded 10 s clips
of indexed tracks are resampled to play at each of SPEEDS (tempo and pitch moved together, as
"nightcore" and "slowed" edits are made), stretched in time to each of TEMPOS at their own pitch
(phase vocoder) and moved in key by each of KEYS_ST semitones at their own tempo, written as WAV
files and matched end to end (`Engine.match`, the stored threshold): a clip is found when its
source (or a version of it) is listed first at its speed (within 0.01; 1.0 for a key change; a
looped track may place it at another pass of the loop). Where Olaf is built (`make olaf`) it
stores the same half and answers the same uploads, a clip found when its source is the first
file it names. Clips of the unindexed half (other music: none of its tracks is in the catalog)
are matched with the configured key and speed readings and with none
(MIRSEARCH_SPEED_READINGS=0), taking turns, so their cost is a ratio of one run; any
track listed for them is a false alarm. Writes bench/speed_range.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import olaf
from eval_dupes import _split, catalog_ids

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.encoding import write
from mirsearch.transforms import pitch, speed, tempo

OUT = Path(__file__).resolve().parent / "speed_range.json"
CLIP_S = 10.0
TRIALS = 16  # clips per speed
OTHER = 24  # clips of other music
SPEEDS = (0.66, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.45, 1.5)
TEMPOS = (0.7, 0.75, 0.8, 0.85, 0.9, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4)
KEYS_ST = (-4, -3, -2, 2, 3, 4)
# kind → (its values, the change made, the speed a found copy is told at)
CHANGES = {
    "speed": (SPEEDS, lambda x, sr, v: speed(x, sr, factor=v)[0], lambda v: v),
    "tempo": (TEMPOS, lambda x, sr, v: tempo(x, sr, factor=v)[0], lambda v: v),
    "key": (KEYS_ST, lambda x, sr, v: pitch(x, sr, semitones=v)[0], lambda v: 1.0),
}


def run(audio_dir: Path, *, seed: int = 0) -> dict:
    indexed, negatives = _split(audio_dir, quick=False)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as home:
        home = Path(home)
        settings = Settings.from_env({}, home=home / "mirsearch")
        engine = Engine(settings)
        engine.index_paths([audio_dir / r["path"] for r in indexed])
        track_of, twins = catalog_ids(engine, indexed)
        version_of = {t: group for group in twins.values() for t in group}
        sr = settings.audio.sample_rate
        uploads = []  # (kind, value, the speed told, path, the source's versions)
        for k in range(TRIALS):
            row = indexed[int(rng.integers(len(indexed)))]
            x = load(audio_dir / row["path"]).samples
            start = int(rng.integers(0, max(1, x.size - int(1.6 * CLIP_S * sr))))
            source = x[start : start + int(1.6 * CLIP_S * sr)]  # enough for 10 s at 1.6x
            for kind, (values, change, told) in CHANGES.items():
                for value in values:
                    clip = change(source, sr, value)[: int(CLIP_S * sr)]
                    path = home / f"clip-{k:02d}-{kind}-{value:g}.wav"
                    write(path, clip, sr)
                    uploads.append(
                        (kind, value, told(value), path, version_of[track_of[row["path"]]])
                    )
        found = _found(engine, uploads)
        others = []
        for k in range(OTHER):
            row = negatives[int(rng.integers(len(negatives)))]
            x = load(audio_dir / row["path"]).samples
            start = int(rng.integers(0, max(1, x.size - int(CLIP_S * sr))))
            path = home / f"other-{k:02d}.wav"
            write(path, x[start : start + int(CLIP_S * sr)], sr)
            others.append(path)
        without = Engine(Settings.from_env({"MIRSEARCH_SPEED_READINGS": "0"}, home=settings.home))
        out = {
            "clip_s": CLIP_S,
            "trials": TRIALS,
            "speed_readings": list(settings.duplicates.speed_readings),
            "key_readings_st": list(settings.duplicates.key_readings_st),
            "found": found["speed"],
            "found_tempo": found["tempo"],
            "found_key": found["key"],
            "other_music": _cost(engine, without, others),
        }
        path_of = {str((audio_dir / p).resolve()): t for p, t in track_of.items()}
        out["olaf"] = _olaf(audio_dir, indexed, uploads, path_of, home / "olaf")
    return out


def _found(engine: Engine, uploads: list[tuple]) -> dict:
    """For each kind of change and value: the share of its clips found, and the median error of
    the speed told."""
    hits: dict[tuple, list[bool]] = {}
    errors: dict[tuple, list[float]] = {}
    for kind, value, told, path, versions in uploads:
        matches = engine.match(path)
        best = matches[0] if matches else None
        right = best is not None and best.track_id in versions
        key = (kind, f"{value:g}")
        hits.setdefault(key, []).append(bool(right and abs(best.speed - told) <= 0.01))
        if right:
            errors.setdefault(key, []).append(abs(best.speed - told))
    out: dict[str, dict] = {kind: {} for kind in CHANGES}
    for (kind, value), found in hits.items():
        out[kind][value] = {
            "found": round(float(np.mean(found)), 3),
            "median_speed_error": round(median(errors[kind, value]), 4)
            if (kind, value) in errors
            else None,
        }
    return out


def _cost(engine: Engine, without: Engine, others: list[Path]) -> dict:
    """ms per upload of other music with the speed readings and without (taking turns), and
    the share of them any track is listed for."""
    for e in (engine, without):
        e.match(others[0])  # index and reader loaded before the clock starts
    seconds: dict[str, list[float]] = {"with": [], "without": []}
    listed = {"with": 0, "without": 0}
    for path in others:
        for name, e in (("with", engine), ("without", without)):
            started = time.perf_counter()
            listed[name] += bool(e.match(path))
            seconds[name].append(time.perf_counter() - started)
    return {
        "uploads": len(others),
        "ms_p50_with": round(1000 * median(seconds["with"]), 1),
        "ms_p50_without": round(1000 * median(seconds["without"]), 1),
        "cost_ratio": round(sum(seconds["with"]) / sum(seconds["without"]), 2),
        "false_alarms_with": listed["with"] / len(others),
        "false_alarms_without": listed["without"] / len(others),
    }


def _olaf(audio_dir: Path, indexed: list[dict], uploads: list[tuple], path_of: dict, home) -> dict:
    """Olaf's store of the same indexed half and its query of every upload (one batch, every
    core): per kind of change and value, the share of clips whose source is the first file it
    names."""
    files = [audio_dir / r["path"] for r in indexed]
    try:
        answered = olaf.store_and_query(files, [u[3] for u in uploads], home)
    except olaf.Unavailable as exc:
        return {"built": False, "note": str(exc)}
    firsts = olaf.olaf_top_paths(answered, len(uploads))
    hits: dict[str, dict[str, list[bool]]] = {kind: {} for kind in CHANGES}
    for (kind, value, _, _, versions), first in zip(uploads, firsts, strict=True):
        named = path_of.get(str(Path(first).resolve()), -1) if first else -1
        hits[kind].setdefault(f"{value:g}", []).append(named in versions)

    def shares(by_value: dict) -> dict:
        return {k: round(float(np.mean(v)), 3) for k, v in by_value.items()}

    return {
        "built": True,
        "found": shares(hits["speed"]),
        "found_tempo": shares(hits["tempo"]),
        "found_key": shares(hits["key"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path, nargs="?", default=Path("../shared/audio"))
    report = run(parser.parse_args().audio_dir)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
