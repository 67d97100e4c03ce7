"""Which compact print format and which window-vector quantisation keep near-duplicate power.

One pass of the `make eval-dupes` queries: every query is embedded once per pitch hypothesis, its
candidate lines are found once per window index (exact float32, 8-bit and 4-bit scalar
quantised), and each line is verified with every candidate print format: the stored track print
coarsened (bands merged, frames pooled, values quantised to a few bits, zlib on top) against the
query's print at full precision. For each variant the threshold is set as `--calibrate` sets it
(the highest score of other music, its logit raised by the margin) and recall is measured at it,
so the variants compare at zero false positives. Writes bench/print_formats.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from mirsearch import duplicates, fingerprint, lines
from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.index import VectorIndex
from mirsearch.neighbours import IdIndex

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import eval_dupes  # noqa: E402

OUT = HERE / "print_formats.json"
BASE_FPS = 32.0  # the format-1 print's frame rate, which every format here starts from


@dataclass(frozen=True)
class Format:
    """A print coarsened from the 1-byte, 32 fps, 44-band print."""

    name: str
    band_group: int = 1  # adjacent bands averaged together
    time_pool: int = 1  # adjacent frames averaged together
    bits: int = 8  # 8: the current bytes; fewer: frame-centred dB quantised to this many bits
    step_db: float = 3.0  # quantiser step for bits < 8 (1 bit: the sign)

    def query(self, p: np.ndarray) -> np.ndarray:
        return fingerprint._pooled(p.astype(np.float32), self.band_group, self.time_pool)

    def stored(self, p: np.ndarray) -> tuple[np.ndarray, int]:
        """The track print as the matcher would read it back, and its zlib size in bytes."""
        x = self.query(p)
        if self.bits >= 8:  # format 1: whole decibels in a byte
            one_byte = np.clip(np.round(x + 80.0), 0, 255).astype(np.uint8)
            return one_byte.astype(np.float32), len(zlib.compress(one_byte.tobytes(), 9))
        x = x - x.mean(axis=0, keepdims=True)
        if self.bits == 1:
            codes = (x > 0).astype(np.uint8)
            values = codes * 2.0 - 1.0
        else:
            half = 2 ** (self.bits - 1)
            levels = np.clip(np.round(x / self.step_db), -half, half - 1)
            codes = (levels + half).astype(np.uint8)
            values = levels * self.step_db
        planes = np.concatenate([np.packbits((codes >> i) & 1) for i in range(self.bits)])
        return values.astype(np.float32), len(zlib.compress(planes.tobytes(), 9))

    @property
    def frames_per_s(self) -> float:
        return BASE_FPS / self.time_pool


FORMATS = [
    Format("v1 44b 32fps 8bit"),
    Format("44b 32fps 4bit s3", bits=4),
    Format("22b 32fps 4bit s3", band_group=2, bits=4),
    Format("22b 32fps 3bit s4", band_group=2, bits=3, step_db=4.0),
    Format("44b 16fps 4bit s3", time_pool=2, bits=4),
    Format("22b 32fps 2bit s6", band_group=2, bits=2, step_db=6.0),
]
# the transforms and clip lengths where prints decide (everything else is found by all variants)
HARD = ["none", "noise_snr10", "mix_-12db", "reverb", "tempo_-5%", "pitch_+1st"]
INDEXES = {"flat": None, "sq8": "QT_8bit"}  # sq4 lost 1.5 points of recall in a first run
# the print formats checked with each quantised window index (all of them with the exact one)
WITH_QUANTISED = {"v1 44b 32fps 8bit"}


def base_print(engine: Engine, samples: np.ndarray, *, frequency_scale: float = 1.0) -> np.ndarray:
    """The full-precision print every format is cut from: the kept mel bands at 32 fps (dB)."""
    with torch.inference_mode():
        mel_db = engine.embedder.model.front_end(
            torch.from_numpy(samples), frequency_scale=frequency_scale
        ).numpy()
    config = engine.embedder.feature_config
    return fingerprint._pooled(
        mel_db[fingerprint._kept_bands(config)], 1, int(config.frames_per_s // BASE_FPS)
    )


def quantised(index: VectorIndex, qtype: str) -> VectorIndex:
    """A copy of `index` whose windows are scalar-quantised over the fixed range [-1, 1]."""
    ids = index._windows.live_ids()
    vectors = index._windows.reconstruct(ids)
    inner = faiss.IndexScalarQuantizer(
        index.meta.dim, getattr(faiss.ScalarQuantizer, qtype), faiss.METRIC_INNER_PRODUCT
    )
    inner.train(np.stack([-np.ones(index.meta.dim), np.ones(index.meta.dim)]).astype(np.float32))
    windows = IdIndex(faiss.IndexIDMap(faiss.IndexFlatIP(index.meta.dim)), index.config)
    windows.faiss_index = faiss.IndexIDMap(inner)  # a kind IdIndex does not make: searched as flat
    windows.faiss_index.add_with_ids(vectors, ids)
    copy = VectorIndex(index._meta, index.config, windows, index._tracks)
    copy._meta = index._meta
    return copy


def run(audio_dir: Path, *, quick: bool) -> dict:
    with open(audio_dir / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    indexed, negatives = eval_dupes.split_tracks(rows, seed=0)
    if quick:
        indexed, negatives = indexed[::4], negatives[::4]
    records: dict[str, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env(home=Path(home)))
        engine.index_paths([audio_dir / r["path"] for r in indexed], workers=2)
        base = engine.index()
        indexes = {name: base if q is None else quantised(base, q) for name, q in INDEXES.items()}
        track_of, twins = eval_dupes.catalog_ids(engine, indexed)
        v1 = {
            track_of[r["path"]]: base_print(engine, load(audio_dir / r["path"]).samples)
            for r in indexed
        }
        audio_s = sum(p.shape[1] for p in v1.values()) / BASE_FPS
        stored, sizes = {}, {}
        for fmt in FORMATS:
            decoded = {t: fmt.stored(p) for t, p in v1.items()}
            stored[fmt.name] = {t: d[0] for t, d in decoded.items()}
            sizes[fmt.name] = round(sum(d[1] for d in decoded.values()) / audio_s, 1)
        config = engine.settings.duplicates
        variants = [
            (i, f.name) for i in INDEXES for f in FORMATS if i == "flat" or f.name in WITH_QUANTISED
        ]
        fmt_of = {f.name: f for f in FORMATS}
        started = time.perf_counter()
        for n, (row, clip_name, name, y) in enumerate(
            eval_dupes.queries(
                indexed + negatives,
                negatives,
                audio_dir,
                seed=0,
                quick=quick,
                max_whole_s=120.0,
                transforms=HARD,
                clips={"5s": (5.0, 1), "10s": (10.0, 1)},
            )
        ):
            scales = [2 ** (st / 12) for st in config.pitch_hypotheses_st]
            hypotheses = engine.embedder.matching(
                y, hop_s=engine.settings.embedding.query_hop_s, frequency_scales=scales
            )
            query_bases = [base_print(engine, y, frequency_scale=scale) for scale in scales]
            found_by = {}
            for index_name, index in indexes.items():
                per_reading = [
                    lines.vote(index, h.vectors, h.offsets_s, config=config, exclude=frozenset())
                    for h in hypotheses
                ]
                duration_s = y.size / engine.embedder.sample_rate
                chosen = duplicates.strongest(per_reading, duration_s, config)
                for vi, fname in variants:
                    if vi != index_name:
                        continue
                    fmt = fmt_of[fname]
                    found_by[(vi, fname)] = duplicates.verified_best(
                        per_reading,
                        [fmt.query(base) for base in query_bases],
                        chosen,
                        stored[fname],
                        fmt.frames_per_s,
                        config,
                    )
            truth = track_of.get(row["path"])
            accepted = twins.get(row["pair_group"] or row["path"], set())
            for key, found in found_by.items():
                records[f"{key[0]} | {key[1]}"].append(
                    {
                        "track": row["path"],
                        "clip": clip_name,
                        "transform": name,
                        "positive": truth is not None,
                        "seen": False,
                        "true_score": max(
                            (m.score for m in found if m.track_id == truth), default=0.0
                        ),
                        "false_score": max(
                            (m.score for m in found if m.track_id not in accepted), default=0.0
                        ),
                        "true_agreement": max(
                            (m.agreement for m in found if m.track_id == truth), default=0.0
                        ),
                    }
                )
            if n % 200 == 0:
                print(f"{n} queries, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    report = {}
    for key, recs in records.items():
        threshold = eval_dupes.threshold_from(recs)
        summary = eval_dupes.summarise({"records": recs}, threshold)["all"]
        index_name, fname = key.split(" | ")
        by_transform = {t: float(np.mean(list(c.values()))) for t, c in summary["recall"].items()}
        report[key] = {
            "print_bytes_per_s_zlib": sizes[fname],
            "threshold": threshold,
            "recall_all": summary["recall_all"],
            "false_positive_rate": summary["false_positive_rate"],
            "recall": summary["recall"],
            "worst_transforms": sorted(by_transform.items(), key=lambda kv: kv[1])[:4],
            "highest_negative": max(
                max(r["true_score"], r["false_score"]) for r in recs if not r["positive"]
            ),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report = run(args.audio_dir, quick=args.quick)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    for key, r in sorted(report.items(), key=lambda kv: -kv[1]["recall_all"]):
        print(
            f"{key:32s} {r['print_bytes_per_s_zlib']:7.1f} B/s  thr {r['threshold']:.4f}  "
            f"recall {r['recall_all']:.4f}  worst {r['worst_transforms'][:2]}"
        )


if __name__ == "__main__":
    main()
