"""Retrieval evaluation on real music: clip → source track, and whole-track precision@5 by package.

Indexes the folder into a temporary home with the real indexer, then measures:
- rank-1 accuracy of 10 s clips cut at seeded random offsets, as they are and re-encoded to MP3;
- precision@5 of "same source package" for whole tracks (the manifest's `package`, a proxy for
  sounding alike), for our embeddings (`similar`) and for an MFCC-statistics baseline, same run,
  over all tracks and over those of the packages the tagging branch never heard in training
  (`unseen`; the other four it was taught on every 3 s, datasets.CONTRASTIVE_PACKAGES), and in a
  catalog of its own over those and the soundtracks `scripts/fetch_training_music.py --likeness`
  fetches (`soundtrack_likeness`: 122 tracks of 14 soundtracks no network here trained on);
- for each of the manifest's `pair_group`s (two versions of one piece), whether one partner is
  in the other's top 5 `similar`.
Prints a JSON object and writes it to bench/retrieval.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.datasets import CONTRASTIVE_PACKAGES
from mirsearch.encoding import write
from mirsearch.transforms import TRANSFORMS

OUT = Path(__file__).resolve().parent / "retrieval.json"


def read_manifest(audio_dir: Path) -> dict[str, dict]:
    with open(audio_dir / "manifest.tsv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f, delimiter="\t")}


def clip_accuracy(
    engine: Engine,
    audio_dir: Path,
    ids: dict[str, int],
    *,
    clips_per_track: int,
    clip_s: float,
    seed: int,
    workdir: Path,
) -> dict:
    """Rank-1 accuracy of clips cut at random offsets, plain and re-encoded to 64 kbit/s MP3."""
    rng = np.random.default_rng(seed)
    hits = {"none": 0, "mp3_64k": 0}
    total = 0
    for name, track_id in sorted(ids.items()):
        decoded = load(audio_dir / name, config=engine.settings.audio)
        sr = decoded.sample_rate
        for _ in range(clips_per_track):
            start = int(rng.uniform(0, max(0.0, decoded.info.duration_s - clip_s)) * sr)
            clip = decoded.samples[start : start + int(clip_s * sr)]
            total += 1
            for label, transform in (("none", None), ("mp3_64k", TRANSFORMS["mp3_64k"])):
                samples, rate = (clip, sr) if transform is None else transform(clip, sr, rng=rng)
                path = workdir / f"clip-{label}.wav"
                write(path, samples, rate)
                results = engine.search(path, k=1)
                hits[label] += bool(results) and results[0].track_id == track_id
    return {label: round(count / total, 4) for label, count in hits.items()} | {"clips": total}


def precision_at_5(engine: Engine, package: dict[int, str], asked: list[int] | None = None) -> dict:
    """Whole-track precision@5 of same package (`package`: track id → package, the catalog's
    tracks), embeddings vs MFCC statistics, over the `asked` tracks (default: every track whose
    package holds another to find)."""
    held = Counter(package.values())
    asked = [t for t in (package if asked is None else asked) if held[package[t]] > 1]
    if not asked:
        return {"tracks": 0}
    ours = [
        np.mean([package[r.track_id] == package[t] for r in engine.similar(t, k=5)]) for t in asked
    ]
    rows = engine.catalog.get_many(list(package))
    order = list(package)
    mfcc = np.array(
        [rows[t].descriptors["mfcc_mean"] + rows[t].descriptors["mfcc_std"] for t in order]
    )
    mfcc = (mfcc - mfcc.mean(0)) / (mfcc.std(0) + 1e-9)
    mfcc /= np.linalg.norm(mfcc, axis=1, keepdims=True)
    similarity = mfcc @ mfcc.T
    np.fill_diagonal(similarity, -np.inf)
    baseline = []
    for t in asked:
        top = np.argsort(-similarity[order.index(t)])[:5]
        baseline.append(np.mean([package[order[j]] == package[t] for j in top]))
    return {
        "embeddings": round(float(np.mean(ours)), 4),
        "mfcc_baseline": round(float(np.mean(baseline)), 4),
        "tracks": len(asked),
    }


def soundtrack_likeness(audio_dir: Path, likeness_dir: Path) -> dict:
    """precision@5 of same soundtrack over music no network here trained on, in a catalog of its
    own: the ../shared/audio packages the tagging branch never heard and the soundtracks of
    `scripts/fetch_training_music.py --likeness` (a track alone in its package is among those
    searched, not asked)."""
    package = {
        str((audio_dir / name).resolve()): row["package"]
        for name, row in read_manifest(audio_dir).items()
        if row["package"] not in CONTRASTIVE_PACKAGES
    }
    package |= {
        str((likeness_dir / name).resolve()): row["package"]
        for name, row in read_manifest(likeness_dir).items()
    }
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env(home=Path(home)))
        engine.index_paths([Path(p) for p in sorted(package)], workers=2)
        rows, _ = engine.catalog.list_tracks(per_page=10_000)
        ids = {r.path: r.id for r in rows if r.path in package and r.status == "indexed"}
        result = precision_at_5(engine, {ids[p]: package[p] for p in ids})
    return result | {"soundtracks": len(set(package.values())), "catalog": len(ids)}


def pair_groups(engine: Engine, manifest: dict[str, dict], ids: dict[str, int]) -> dict:
    """Per pair group: is either version in the other's top 5 `similar`?"""
    groups: dict[str, list[int]] = {}
    for name, row in manifest.items():
        if row.get("pair_group") and name in ids:
            groups.setdefault(row["pair_group"], []).append(ids[name])
    found = {}
    for group, members in sorted(groups.items()):
        a, b = members[:2]
        found[group] = any(
            other in [r.track_id for r in engine.similar(one, k=5)]
            for one, other in ((a, b), (b, a))
        )
    return {"found": sum(found.values()), "groups": len(found), "per_group": found}


def run(audio_dir: Path, *, clips_per_track: int = 3, seed: int = 0) -> dict:
    manifest = read_manifest(audio_dir)
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env(home=Path(home)))
        started = time.perf_counter()
        summary = engine.index_paths([audio_dir], workers=2)
        index_s = time.perf_counter() - started
        rows, _ = engine.catalog.list_tracks(per_page=10_000)
        ids = {Path(r.path).name: r.id for r in rows if Path(r.path).name in manifest}
        package = {ids[name]: manifest[name]["package"] for name in ids}
        p5 = precision_at_5(engine, package)
        unseen = [t for t, name in package.items() if name not in CONTRASTIVE_PACKAGES]
        p5["unseen"] = precision_at_5(engine, package, unseen)
        clips = clip_accuracy(
            engine,
            audio_dir,
            ids,
            clips_per_track=clips_per_track,
            clip_s=10.0,
            seed=seed,
            workdir=Path(home),
        )
        return {
            "date": time.strftime("%Y-%m-%d"),
            "index": summary.to_dict() | {"seconds": round(index_s, 2)},
            "clip_rank1_10s": clips,
            "precision_at_5_same_package": p5,
            "pair_groups_in_top5": pair_groups(engine, manifest, ids),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--clips-per-track", type=int, default=3)
    parser.add_argument(
        "--likeness",
        type=Path,
        default=Path("var/likeness_music"),
        help="the soundtracks of `scripts/fetch_training_music.py --likeness`",
    )
    args = parser.parse_args()
    if not (args.audio_dir / "manifest.tsv").exists():
        sys.exit(f"{args.audio_dir}/manifest.tsv not found: this evaluation needs ../shared/audio")
    result = run(args.audio_dir, clips_per_track=args.clips_per_track)
    if (args.likeness / "manifest.tsv").is_file():
        result["soundtrack_likeness"] = soundtrack_likeness(args.audio_dir, args.likeness)
    else:
        result["soundtrack_likeness"] = {
            "note": f"{args.likeness}/manifest.tsv not found: "
            "python scripts/fetch_training_music.py --likeness"
        }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
