"""Near-duplicate evaluation on real music: recall per transform and clip length, false positives.

Half the tracks of ../shared/audio are indexed (each `pair_group` kept on one side, so a remaster
is never a "negative" of its indexed twin), the other half stay outside as negatives. Clips of 5,
10 and 20 s at seeded random offsets and whole tracks (capped at `--max-whole-s`) go through every
transform in mirsearch.transforms and are matched against the index. A positive is found when its
source track is matched; any match of a negative query is a false positive. Wrong tracks are
scored with the query read at every pitch hypothesis (`match` reads the shifted ones only when the
query as it plays leaves it in doubt): the threshold's sample of other music lined up with a
query, and a false-positive count that holds whichever readings a query needs.

`--calibrate` stores the threshold this run calls for (the highest negative or wrong-track score
raised by a margin) in mirsearch/assets/duplicates.json for the model; every run reports figures
at the stored threshold and, to show how such a threshold holds on unseen music, a two-fold
estimate (set on half the negative tracks, measured on the other half). Results go to
bench/dupes.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.model_card import read_card
from mirsearch.scoring import CALIBRATION
from mirsearch.transforms import TRANSFORMS

OUT = Path(__file__).resolve().parent / "dupes.json"
RECORDS = OUT.with_name("dupes-records.json")  # every query's scores (not committed)
CLIPS = {"5s": (5.0, 1), "10s": (10.0, 2), "20s": (20.0, 1), "whole": (None, 1)}
MARGIN_LOGIT = 0.5  # the threshold's odds are 1.65× those of the highest negative score


def split_tracks(rows: list[dict], *, seed: int) -> tuple[list[dict], list[dict]]:
    """(indexed, negatives): about half of each package, pair groups kept on one side."""
    rng = np.random.default_rng(seed)
    units: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        units[row["pair_group"] or row["path"]].append(row)
    by_package: dict[str, list[list[dict]]] = defaultdict(list)
    for unit in units.values():
        by_package[unit[0]["package"]].append(unit)
    indexed, negatives = [], []
    for package in sorted(by_package):
        package_units = by_package[package]
        order = rng.permutation(len(package_units))
        for rank, i in enumerate(order):
            (indexed if rank % 2 == 0 else negatives).extend(package_units[i])
    return indexed, negatives


def queries(
    rows,
    outside,
    audio_dir: Path,
    *,
    seed: int,
    quick: bool,
    max_whole_s: float,
    transforms: list[str] | None = None,
    clips: dict | None = None,
):
    """(row, clip name, transform name, samples) for every query, deterministically.

    `transforms` and `clips` narrow the set (bench/print_formats.py uses the hard cases only).

    The sound a clip is mixed with comes from `outside` (tracks not in the catalog): catalog
    audio buried in a query is a duplicate to find, not a false match.
    """
    rng = np.random.default_rng(seed)
    decoded = {row["path"]: load(audio_dir / row["path"]).samples for row in rows}
    quick_names = ["none", "mp3_64k", "noise_snr10", "speed_+5%", "pitch_-1st"]
    names = transforms or (quick_names if quick else list(TRANSFORMS))
    clips = clips or ({"10s": (10.0, 1)} if quick else CLIPS)
    for row in rows:
        x = decoded[row["path"]]
        others = [r for r in outside if r["path"] != row["path"]][:3]
        other = np.concatenate([decoded[r["path"]][: 16_000 * 30] for r in others])
        for clip_name, (length_s, count) in clips.items():
            for _ in range(count):
                n = int((length_s or max_whole_s) * 16_000)
                start = int(rng.integers(0, max(1, x.size - n)))
                clip = x[start : start + n]
                for name in names:
                    y, _ = TRANSFORMS[name](clip, 16_000, rng=rng, background=other)
                    yield row, clip_name, name, y


def run(
    audio_dir: Path,
    *,
    seed: int = 0,
    quick: bool = False,
    max_whole_s: float = 120.0,
    threshold: float | None = None,
    workers: int | None = None,
) -> dict:
    """Index the catalog half once, then match every query, in `workers` processes (default:
    one per core) that each take every workers-th track's queries from the same seeded stream
    and, several of them, run one thread each (as `mirsearch match --workers N` does)."""
    indexed, negatives = _split(audio_dir, quick=quick)
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env(home=Path(home)))
        started = time.perf_counter()
        engine.index_paths([audio_dir / r["path"] for r in indexed])
        index_s = time.perf_counter() - started
        threshold = engine.index().meta.match_threshold if threshold is None else threshold
        jobs = [
            (Path(home), audio_dir, seed, quick, max_whole_s, k, workers) for k in range(workers)
        ]
        if workers == 1:
            parts = [_query_shard(*jobs[0])]
        else:
            with get_context("spawn").Pool(workers) as pool:
                parts = pool.starmap(_query_shard, jobs)
    records = [r for part in parts for r in part]
    query_s = [r.pop("query_s") for r in records]
    return {
        "records": records,
        "threshold": threshold,
        "index_seconds": index_s,
        "query_ms_p50": 1000 * float(np.median(query_s)),
        "query_ms_p95": 1000 * float(np.percentile(query_s, 95)),
        "indexed_tracks": len(indexed),
        "negative_tracks": len(negatives),
        "workers": workers,
    }


def _split(audio_dir: Path, *, quick: bool) -> tuple[list[dict], list[dict]]:
    with open(audio_dir / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    indexed, negatives = split_tracks(rows, seed=0)
    if quick:
        indexed, negatives = indexed[::4], negatives[::4]
    return indexed, negatives


def catalog_ids(engine: Engine, indexed: list[dict]) -> tuple[dict[str, int], dict]:
    """(file name → track id, pair group or file name → the ids of its versions): versions of
    one piece (pair_group) are not "wrong" matches of each other."""
    tracks, _ = engine.catalog.list_tracks(per_page=10_000)
    track_of = {Path(t.path).name: t.id for t in tracks}
    twins = defaultdict(set)
    for row in indexed:
        twins[row["pair_group"] or row["path"]].add(track_of[row["path"]])
    return track_of, twins


def heard(metadata: dict) -> set[str]:
    """Names of the files the model trained on: all of them in a distilled model's card
    (`training_files`, the matching branch's contrastive files among them), those of the matching
    branch in a card of its training alone (`contrastive_files`; the shipped card has none, and
    every query had counted as unseen)."""
    return set(metadata.get("training_files") or metadata.get("contrastive_files") or [])


def _query_shard(
    home: Path, audio_dir: Path, seed: int, quick: bool, max_whole_s: float, shard: int, shards: int
) -> list[dict]:
    """The records of the queries of every `shards`-th track from `shard` on, matched against
    the index in `home` (every shard draws the whole seeded stream, so the queries are the same
    whatever the number of shards)."""
    indexed, negatives = _split(audio_dir, quick=quick)
    engine = Engine(Settings.from_env(home=home), threads=1 if shards > 1 else None)
    track_of, twins = catalog_ids(engine, indexed)
    seen = heard(engine.embedder.card.metadata)
    mine = {row["path"] for row in (indexed + negatives)[shard::shards]}
    records = []
    for row, clip_name, name, y in queries(
        indexed + negatives, negatives, audio_dir, seed=seed, quick=quick, max_whole_s=max_whole_s
    ):
        if row["path"] not in mine:
            continue
        t0 = time.perf_counter()
        found = engine.match_candidates(y)
        query_s = time.perf_counter() - t0
        truth = track_of.get(row["path"])
        accepted = twins.get(row["pair_group"] or row["path"], set())
        # wrong tracks as every pitch hypothesis lines them up, read by `match` or not: the
        # threshold's sample of other music (a settled query's shifted readings go unread)
        wrong = [
            m
            for m in engine.match_candidates(y, every_hypothesis=True)
            if m.track_id not in accepted
        ]
        records.append(
            {
                "track": row["path"],
                "clip": clip_name,
                "transform": name,
                "positive": truth is not None,
                "seen": row["path"] in seen,
                "true_score": max((m.score for m in found if m.track_id == truth), default=0.0),
                "false_score": max((m.score for m in wrong), default=0.0),
                "true_match": next((m.to_dict() for m in found if m.track_id == truth), None),
                "false_match": next((m.to_dict() for m in wrong), None),
                "query_s": query_s,
            }
        )
    return records


def summarise(result: dict, threshold: float) -> dict:
    """Recall per transform × clip length, false-positive and wrong-track rates, at `threshold`."""

    def table(records):
        cells = defaultdict(list)
        for r in records:
            if r["positive"]:
                cells[(r["transform"], r["clip"])].append(r["true_score"] >= threshold)
        recall = defaultdict(dict)
        for (transform, clip), hits in sorted(cells.items()):
            recall[transform][clip] = round(float(np.mean(hits)), 4)
        negatives = [r for r in records if not r["positive"]]
        positives = [r for r in records if r["positive"]]
        false = [max(r["true_score"], r["false_score"]) >= threshold for r in negatives]
        wrong = [r["false_score"] >= threshold for r in positives]
        found = [r["true_score"] >= threshold for r in positives]
        return {
            "recall": dict(recall),
            "speed": speed_accuracy(positives, threshold),
            "recall_all": round(float(np.mean(found)), 4) if found else None,
            "false_positive_rate": round(float(np.mean(false)), 5) if false else None,
            "wrong_track_rate": round(float(np.mean(wrong)), 5) if wrong else None,
            "positive_queries": len(positives),
            "negative_queries": len(negatives),
        }

    records = result["records"]
    return {
        "threshold": threshold,
        "all": table(records),
        "unseen_by_model": table([r for r in records if not r["seen"]]),
    }


def true_speed(transform: str) -> float:
    """Track seconds per query second of a transform's copy: 1.05 for "speed_+5%" or
    "tempo_+5%", 1.0 for those that keep time (re-encodes, filters, noise, pitch, mixing)."""
    if transform.startswith(("speed_", "tempo_")):
        return 1.0 + float(transform.split("_")[1].rstrip("%")) / 100
    return 1.0


def speed_accuracy(positives: list[dict], threshold: float) -> dict:
    """How close the reported speed of the found positives is to their true speed: the share
    within 0.01 and the median error, for copies played faster or slower and for the rest."""
    errors = defaultdict(list)
    for r in positives:
        if r["true_score"] >= threshold and r["true_match"]:
            kind = "changed" if true_speed(r["transform"]) != 1.0 else "kept"
            errors[kind].append(abs(r["true_match"]["speed"] - true_speed(r["transform"])))
    return {
        kind: {
            "found": len(e),
            "within_0.01": round(float(np.mean(np.array(e) <= 0.01)), 4),
            "median_error": round(float(np.median(e)), 4),
        }
        for kind, e in sorted(errors.items())
    }


def threshold_from(records: list[dict]) -> float:
    """The highest score of a negative query or of a wrong track, raised by the margin.

    The margin is added to the score's logit, so it means the same evidence wherever the highest
    negative falls (0.02 on the score is a wide margin near 0.99 and a thin one near 0.5).
    """
    scores = [max(r["true_score"], r["false_score"]) for r in records if not r["positive"]]
    scores += [r["false_score"] for r in records if r["positive"]]
    highest = float(np.clip(max(scores, default=0.0), 1e-6, 1 - 1e-6))
    logit = np.log(highest / (1 - highest)) + MARGIN_LOGIT
    return round(float(1 / (1 + np.exp(-logit))), 4)


def cross_validated(records: list[dict]) -> dict:
    """Two folds over the negative tracks: a threshold set on one half, rates measured on the
    other (what a threshold fitted on some music does on music it has not seen)."""
    negative_tracks = sorted({r["track"] for r in records if not r["positive"]})
    folds = [set(negative_tracks[0::2]), set(negative_tracks[1::2])]
    rates = []
    for fit, held in (folds, folds[::-1]):
        threshold = threshold_from([r for r in records if r["positive"] or r["track"] in fit])
        test = [r for r in records if r["positive"] or r["track"] in held]
        rates.append(summarise({"records": test}, threshold)["all"] | {"threshold": threshold})
    return {
        "false_positive_rate": round(float(np.mean([r["false_positive_rate"] for r in rates])), 5),
        "recall_all": round(float(np.mean([r["recall_all"] for r in rates])), 4),
        "thresholds": [r["threshold"] for r in rates],
    }


def store_threshold(threshold: float, model_hash: str, negative_queries: int) -> None:
    CALIBRATION.write_text(
        json.dumps(
            {
                "model_sha256": model_hash,
                "threshold": threshold,
                "margin_logit": MARGIN_LOGIT,
                "calibrated_on": "bench/eval_dupes.py --calibrate: the highest score of a "
                "negative query or of a wrong track in the evaluation set, its logit raised by the "
                "margin",
                "negative_queries": negative_queries,
            },
            indent=2,
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="a few tracks and transforms")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="store the threshold this run calls for, then report at it",
    )
    parser.add_argument("--max-whole-s", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    args = parser.parse_args()
    if not (args.audio_dir / "manifest.tsv").exists():
        sys.exit(f"{args.audio_dir}/manifest.tsv not found: this evaluation needs ../shared/audio")
    started = time.perf_counter()
    result = run(
        args.audio_dir, quick=args.quick, max_whole_s=args.max_whole_s, workers=args.workers
    )
    threshold = result["threshold"]
    if args.calibrate:
        threshold = threshold_from(result["records"])
        negatives = sum(not r["positive"] for r in result["records"])
        store_threshold(threshold, read_card().matching_hash, negatives)
        print(f"stored threshold {threshold}", file=sys.stderr)
    report = (
        summarise(result, threshold)
        | {"cross_validated_threshold": cross_validated(result["records"])}
        | {k: v for k, v in result.items() if k not in ("records", "threshold")}
        | {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - started)}
    )
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    RECORDS.write_text(json.dumps(result["records"]) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
