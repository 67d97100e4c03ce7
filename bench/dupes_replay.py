"""Replay `make eval-dupes` offline: a change to the prints' format, the agreement or the score's
weights measured in minutes instead of a 40-minute calibration.

`record` runs the calibration's query stream once (same split, seeds and transforms as
bench/eval_dupes.py) and keeps, for every query and pitch hypothesis, the candidate lines the
windows propose (before verification) and the query's print at full precision (44 bands, 32 fps),
plus every catalog track's: var/dupes_replay/ (about 2 GB, not committed; ~35 min on 2 cores).
`score` verifies those lines again with a stored-print layout (bands merged, bits, step) and an
agreement background share, scores them with the weights given, and reports what `--calibrate`
would: recall at the threshold set by the highest negative (logit margin 0.5), per transform and
clip length, and the two-fold estimate. Recorded with the code it replays, it reproduces
bench/dupes.json (recall exactly; the threshold within 0.001, the prints being kept in float16):
`score` takes ~5 minutes. The lines come from the window vectors, so a change to the network or
its precision (bfloat16, see embeddings.py) needs a new `record`; the soft floor's figures were
replayed on lines recorded in float32 and then confirmed by `make eval-dupes`.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mirsearch import duplicates, fingerprint, lines
from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import DuplicateConfig, Settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import eval_dupes  # noqa: E402
import print_formats  # noqa: E402

OUT = HERE.parent / "var" / "dupes_replay"


def record(audio_dir: Path, *, workers: int = 2) -> None:
    indexed, _ = eval_dupes._split(audio_dir, quick=False)
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(dir=OUT))
    engine = Engine(Settings.from_env(home=home))
    engine.index_paths([audio_dir / r["path"] for r in indexed])
    track_of, _ = eval_dupes.catalog_ids(engine, indexed)
    base = {
        track_of[r["path"]]: print_formats.base_print(engine, load(audio_dir / r["path"]).samples)
        for r in indexed
    }
    (OUT / "tracks.pkl").write_bytes(
        pickle.dumps({t: p.astype(np.float16) for t, p in base.items()})
    )
    jobs = [(home, audio_dir, k, workers) for k in range(workers)]
    with get_context("spawn").Pool(workers) as pool:
        pool.starmap(_record_shard, jobs)


def _record_shard(home: Path, audio_dir: Path, shard: int, shards: int) -> None:
    indexed, negatives = eval_dupes._split(audio_dir, quick=False)
    engine = Engine(Settings.from_env(home=home))
    track_of, twins = eval_dupes.catalog_ids(engine, indexed)
    mine = {row["path"] for row in (indexed + negatives)[shard::shards]}
    config, index = engine.settings.duplicates, engine.index()
    queries = []
    stream = eval_dupes.queries(
        indexed + negatives, negatives, audio_dir, seed=0, quick=False, max_whole_s=120.0
    )
    for row, clip, transform, y in stream:
        if row["path"] not in mine:
            continue
        hypotheses = []
        scales = [2 ** (st / 12) for st in config.pitch_hypotheses_st]
        matchings = engine.embedder.matching(
            y, hop_s=engine.settings.embedding.query_hop_s, frequency_scales=scales
        )
        for scale, analysis in zip(scales, matchings, strict=True):
            voted = lines.vote(
                index, analysis.vectors, analysis.offsets_s, config=config, exclude=frozenset()
            )
            query_print = print_formats.base_print(engine, y, frequency_scale=scale)
            hypotheses.append((voted, query_print.astype(np.float16)))
        truth = track_of.get(row["path"])
        queries.append(
            {
                "track": row["path"],
                "clip": clip,
                "transform": transform,
                "truth": truth,
                "accepted": twins.get(row["pair_group"] or row["path"], set()),
                "hypotheses": hypotheses,
            }
        )
    (OUT / f"queries-{shard}.pkl").write_bytes(pickle.dumps(queries))


def score(layout: tuple[int, int, float], config: DuplicateConfig) -> list[dict]:
    """eval_dupes records for the recorded queries, prints stored as `layout` (band group, bits,
    step in dB; 8 bits: format 1's whole decibels) and verified and scored with `config`."""
    band_group, bits, step_db = layout
    tracks = pickle.loads((OUT / "tracks.pkl").read_bytes())
    fmt = print_formats.Format("replay", band_group=band_group, bits=bits, step_db=step_db)
    stored = {t: fmt.stored(p.astype(np.float32))[0] for t, p in tracks.items()}
    records = []
    for part in sorted(OUT.glob("queries-*.pkl")):
        for q in pickle.loads(part.read_bytes()):
            per_reading = [voted for voted, _ in q["hypotheses"]]
            query_prints = [fmt.query(p.astype(np.float32)) for _, p in q["hypotheses"]]
            duration_s = q["hypotheses"][0][1].shape[1] / print_formats.BASE_FPS
            chosen = duplicates.strongest(per_reading, duration_s, config)
            found = duplicates.verified_best(
                per_reading, query_prints, chosen, stored, fmt.frames_per_s, config
            )
            records.append(
                {
                    "track": q["track"],
                    "clip": q["clip"],
                    "transform": q["transform"],
                    "positive": q["truth"] is not None,
                    "seen": False,
                    "true_score": max(
                        (m.score for m in found if m.track_id == q["truth"]), default=0.0
                    ),
                    "false_score": max(
                        (m.score for m in found if m.track_id not in q["accepted"]), default=0.0
                    ),
                    "true_match": next(
                        (m.to_dict() for m in found if m.track_id == q["truth"]), None
                    ),
                }
            )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record", help="run the query stream once (~35 min)")
    recording.add_argument("audio_dir", type=Path)
    scoring = commands.add_parser("score", help="replay with a print layout and score settings")
    scoring.add_argument("--band-group", type=int, default=fingerprint.BAND_GROUP)
    scoring.add_argument("--bits", type=int, default=fingerprint.BITS)
    scoring.add_argument("--step-db", type=float, default=fingerprint.STEP_DB)
    defaults = DuplicateConfig()
    for name in (
        "verify_background",
        "weight_similarity",
        "weight_log_windows",
        "weight_agreement",
        "weight_agreement_log_windows",
    ):
        scoring.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name)
        )
    args = parser.parse_args()
    if args.command == "record":
        record(args.audio_dir)
        return
    options = {k: v for k, v in vars(args).items() if hasattr(defaults, k)}
    records = score((args.band_group, args.bits, args.step_db), replace(defaults, **options))
    threshold = eval_dupes.threshold_from(records)
    summary = eval_dupes.summarise({"records": records}, threshold)["all"]
    cells = [(t, c, v) for t, row in summary["recall"].items() for c, v in row.items()]
    print(f"threshold {threshold} (bias {defaults.bias}); recall {summary['recall_all']}")
    print("two-fold:", eval_dupes.cross_validated(records))
    print("lowest cells:", sorted(cells, key=lambda cell: cell[2])[:8])


if __name__ == "__main__":
    main()
