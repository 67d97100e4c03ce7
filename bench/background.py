"""Catalog music under other sound: how `match` fares when the catalog track is not the loudest
thing in the upload.

`make eval-dupes`'s `mix_-12db` lays another recording 12 dB *under* a catalog clip. Here the
catalog clip is the bed: half of ../shared/audio is indexed (the split of bench/eval_dupes.py),
and seeded 10 s clips of indexed tracks are mixed at 0, −6 and −12 dB (RMS) under a 10 s clip of
an unindexed track (background music in an upload), under a clip of another indexed track
(an upload holding two catalog tracks: are both listed?), 6 s of it under a 20 s clip of
another indexed track, at its start, middle or end (a second catalog track under part of an
upload), or under talk (a voice-over: a
monologue read by espeak-ng in several voices and rates, made at run time where Debian's
`espeak-ng` is installed; the case says so where it is not). Each mix is written as a WAV file
and matched end to end (`Engine.match`, the stored threshold), and where Olaf is built (`make
olaf`) the landmark fingerprinter indexes the same half and answers the same mixes, side by side.
Writes bench/background.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import olaf
from eval_dupes import _split, catalog_ids

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.encoding import write

OUT = Path(__file__).resolve().parent / "background.json"
CLIP_S = 10.0
PART_S, WHOLE_S = 6.0, 20.0  # "under_part": so much of the bed under a clip this long ...
PART_AT_S = (0.0, 7.0, 14.0)  # ... from one of these, drawn
LEVELS_DB = (0.0, -6.0, -12.0)  # the catalog clip's level against the sound on top
KEYS = {  # the rates of each case
    "under_other_music": ("bed_found", "wrong"),
    "two_catalog_tracks": ("bed_found", "wrong", "both_listed"),
    "under_part": ("bed_found", "wrong", "both_listed"),
    "under_talk": ("bed_found", "wrong"),
}
# The voice-over: what a video's presenter says over its music, read in each of these espeak-ng
# voices at each of these rates (words a minute).
MONOLOGUE = (
    "Hello everyone and welcome back to the channel. Today we are going to look at something I "
    "have wanted to try for a long time. Thank you so much for all the comments on the last "
    "video, I read every single one of them. So let's get started. As you can see here, the "
    "setup is really simple, you only need a few things, and most of them you probably already "
    "have at home. Now, the trick is to take your time. Don't rush it. If something goes wrong, "
    "just start again, it happens to all of us. Okay, here is the first step. I'm going to put "
    "this over here, and then we wait about five minutes. While we wait, let me tell you how I "
    "got into this hobby in the first place. It was about ten years ago, on a rainy afternoon, "
    "when my neighbour showed me his workshop. I had never seen anything like it. Anyway, that's "
    "enough about me. Let's check how it's going. Oh, look at that, it worked perfectly. If you "
    "enjoyed this video, don't forget to like and subscribe, and I will see you next time."
)
VOICES = ("en", "en-us", "en+f3", "en-us+m5", "en+f5", "de", "fr")
RATES_WPM = (150, 175)
NO_TALK = "espeak-ng is not installed (apt install espeak-ng): no voice-over to mix"


def _clip(samples: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, max(1, samples.size - n)))
    return np.resize(samples[start : start + n], n)


def _under(bed: np.ndarray, top: np.ndarray, db: float, at: int = 0) -> np.ndarray:
    """`bed` at `db` (RMS) against the part of `top` it lies under, from sample `at`, mixed,
    peak-limited to full scale."""
    part = top[at : at + bed.size]
    level = np.sqrt(np.mean(np.square(part, dtype=np.float64)) / (np.mean(np.square(bed)) + 1e-12))
    mix = top.astype(np.float64, copy=True)
    mix[at : at + bed.size] += bed * level * 10 ** (db / 20)
    return (mix / max(1.0, float(np.abs(mix).max()))).astype(np.float32)


def run(audio_dir: Path, *, trials: int = 30, seed: int = 0) -> dict:
    """`match` on the mixes, and Olaf on the same ones where it is built (bench/olaf.py)."""
    indexed, negatives = _split(audio_dir, quick=False)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as home:
        home = Path(home)
        engine = Engine(Settings.from_env({}, home=home / "mirsearch"))
        engine.index_paths([audio_dir / r["path"] for r in indexed])
        track_of, twins = catalog_ids(engine, indexed)
        version_of = {t: group for group in twins.values() for t in group}
        samples = {r["path"]: load(audio_dir / r["path"]).samples for r in indexed + negatives}
        rate = engine.settings.audio.sample_rate
        n = int(CLIP_S * rate)
        talk = _talk(home / "talk")
        mixes = []  # (case, level, upload, the bed's versions, the top's versions or none)
        tops_of = {  # each case's sounds on top: (samples, catalog track or None)
            "under_other_music": [(samples[r["path"]], None) for r in negatives],
            "two_catalog_tracks": [(samples[r["path"]], track_of[r["path"]]) for r in indexed],
            "under_talk": [(voice, None) for voice in talk],
            "under_part": [(samples[r["path"]], track_of[r["path"]]) for r in indexed],
        }
        for case, tops in tops_of.items():
            for db in LEVELS_DB if tops else ():
                for k in range(trials):
                    bed_path = indexed[int(rng.integers(len(indexed)))]["path"]
                    bed = track_of[bed_path]
                    top_samples, top = tops[int(rng.integers(len(tops)))]
                    while top == bed:
                        top_samples, top = tops[int(rng.integers(len(tops)))]
                    upload = home / f"{case}-{db}-{k}.wav"
                    if case == "under_part":
                        bed_clip = _clip(samples[bed_path], int(PART_S * rate), rng)
                        at = int(PART_AT_S[int(rng.integers(len(PART_AT_S)))] * rate)
                        mix = _under(bed_clip, _clip(top_samples, int(WHOLE_S * rate), rng), db, at)
                    else:
                        mix = _under(
                            _clip(samples[bed_path], n, rng), _clip(top_samples, n, rng), db
                        )
                    write(upload, mix, rate)
                    mixes.append((case, db, upload, version_of[bed], version_of.get(top, set())))
        listed = [{m.track_id for m in engine.match(upload)} for _, _, upload, _, _ in mixes]
        out = {"trials": trials, "clip_s": CLIP_S, "levels_db": list(LEVELS_DB)}
        out |= _rates(mixes, listed, trials)
        if not talk:
            out["under_talk"] = {"note": NO_TALK}
        path_of = {str((audio_dir / p).resolve()): t for p, t in track_of.items()}
        out["olaf"] = _olaf(audio_dir, indexed, mixes, path_of, trials, home / "olaf")
    return out


def _talk(folder: Path) -> list[np.ndarray]:
    """The monologue read in every voice at every rate, decoded as queries are; none where
    espeak-ng is not installed."""
    espeak = shutil.which("espeak-ng")
    if not espeak:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    voices = []
    for voice in VOICES:
        for wpm in RATES_WPM:
            path = folder / f"{voice}-{wpm}.wav"
            subprocess.run(
                [espeak, "-v", voice, "-s", str(wpm), "-w", str(path), MONOLOGUE],
                check=True,
                capture_output=True,
            )
            voices.append(load(path).samples)
    return voices


def _rates(mixes: list[tuple], listed: list[set[int]], trials: int) -> dict:
    """For each case and level: how often the bed is listed, a track neither the bed nor the
    top (a version of either counts as itself) is listed, and (two catalog tracks) both are."""
    counts: dict = {}
    for (case, db, _, bed, top), found in zip(mixes, listed, strict=True):
        count = counts.setdefault(case, {}).setdefault(f"{db:g}", Counter())
        count["bed_found"] += bool(found & bed)
        count["wrong"] += bool(found - bed - top)
        if case in ("two_catalog_tracks", "under_part"):
            count["both_listed"] += bool(found & bed and found & top)
    return {
        case: {
            level: dict.fromkeys(KEYS[case], 0.0)
            | {key: value / trials for key, value in count.items()}
            for level, count in levels.items()
        }
        for case, levels in counts.items()
    }


def _olaf(
    audio_dir: Path, indexed: list[dict], mixes: list[tuple], path_of: dict, trials: int, home
) -> dict:
    """Olaf's store of the same indexed half and its query of every mix (one batch, every
    core), scored as `match` is: each path it lists for a query is a track it names."""
    files = [audio_dir / r["path"] for r in indexed]
    try:
        answered = olaf.store_and_query(files, [m[2] for m in mixes], home)
    except olaf.Unavailable as exc:
        return {"built": False, "note": str(exc)}
    named = olaf.olaf_listed_paths(answered, len(mixes))
    listed = [{path_of.get(str(Path(p).resolve()), -1) for p in paths} for paths in named]
    return {"built": True, **_rates(mixes, listed, trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path, nargs="?", default=Path("../shared/audio"))
    report = run(parser.parse_args().audio_dir)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
