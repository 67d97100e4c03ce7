"""Catalog music under louder sound, window by window: how often a mix's windows find the quieter
catalog track among their nearest catalog windows, for one or more checkpoints.

`bench/background.py` measures what `match` lists, which needs a threshold calibrated for the
network. A changed matching branch can be judged here first, in minutes and with no calibration:
the catalog half of ../shared/audio (the split of bench/eval_dupes.py) is embedded every 1.5 s,
seeded 10 s clips of it are mixed under other music (another catalog track, or an unindexed one)
at 0 and −6 dB and embedded every 0.5 s, as `match` reads an upload. A query window *hits* when a
window of its bed track within a catalog hop of the aligned time is among its
`DuplicateConfig.neighbours` nearest at `min_similarity` or more: the pairs the line vote counts.
Controls: clips under noise at 10 dB SNR (should stay hit), and the best similarity of clips of
unindexed tracks to any catalog window (wrong-track evidence; it should not rise). Prints a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from background import _clip, _under
from eval_dupes import _split

from mirsearch.audio import load
from mirsearch.config import DuplicateConfig, EmbeddingConfig
from mirsearch.embeddings import Embedder
from mirsearch.transforms import TRANSFORMS

CLIP_S, MIXES, SEED = 10.0, 25, 0
CASES = (  # (name, the sound on top from "catalog" or "unindexed" tracks, bed level in dB)
    ("two catalog tracks, 0 dB", "catalog", 0.0),
    ("under unindexed music, 0 dB", "unindexed", 0.0),
    ("under unindexed music, -6 dB", "unindexed", -6.0),
)


class CatalogWindows:
    """Every catalog window's vector, track number and start, embedded by one checkpoint."""

    def __init__(self, embedder: Embedder, tracks: list[np.ndarray], hop_s: float):
        readings = [embedder.matching(x, hop_s=hop_s, frequency_scales=[1.0])[0] for x in tracks]
        self.vectors = np.concatenate([r.vectors for r in readings])
        self.track = np.repeat(np.arange(len(tracks)), [len(r.vectors) for r in readings])
        self.start_s = np.concatenate([r.offsets_s for r in readings])
        self.hop_s = hop_s

    def hit_rate(self, vectors, offsets_s, track: int, start_s: float, config) -> float:
        """Share of query windows with a window of `track` near its aligned time among their
        nearest (config.neighbours, at config.min_similarity or more)."""
        similarity = vectors @ self.vectors.T
        nearest = np.argsort(-similarity, axis=1)[:, : config.neighbours]
        counted = np.take_along_axis(similarity, nearest, axis=1) >= config.min_similarity
        aligned = (self.track[nearest] == track) & (
            np.abs(self.start_s[nearest] - (start_s + offsets_s[:, None])) <= self.hop_s
        )
        return float(np.mean((aligned & counted).any(axis=1)))


def _read(embedder: Embedder, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A query's windows as `match` reads them (no pitch hypothesis): vectors and starts."""
    reading = embedder.matching(y, hop_s=EmbeddingConfig().query_hop_s, frequency_scales=[1.0])[0]
    return reading.vectors, reading.offsets_s


def measure(
    embedder: Embedder, indexed: list[dict], unindexed: list[dict], samples: dict[str, np.ndarray]
) -> dict[str, float]:
    """The hit rate of each case, of the noise control, and the wrong-track similarity."""
    catalog_audio = [samples[r["path"]] for r in indexed]
    catalog = CatalogWindows(embedder, catalog_audio, EmbeddingConfig().hop_s)
    config, sr = DuplicateConfig(), embedder.sample_rate
    n = int(CLIP_S * sr)
    rng = np.random.default_rng(SEED)
    row = {}
    for name, tops, db in CASES:
        pool = indexed if tops == "catalog" else unindexed
        rates = []
        for _ in range(MIXES):
            bed = int(rng.integers(len(indexed)))
            top = pool[int(rng.integers(len(pool)))]
            while top["path"] == indexed[bed]["path"]:
                top = pool[int(rng.integers(len(pool)))]
            x = catalog_audio[bed]
            start = int(rng.integers(0, max(1, x.size - n)))
            mix = _under(
                np.resize(x[start : start + n], n), _clip(samples[top["path"]], n, rng), db
            )
            rates.append(catalog.hit_rate(*_read(embedder, mix), bed, start / sr, config))
        row[name] = float(np.mean(rates))
    noisy = []
    for bed, x in enumerate(catalog_audio):
        start = int(rng.integers(0, max(1, x.size - n)))
        y, _ = TRANSFORMS["noise_snr10"](np.resize(x[start : start + n], n), sr, rng=rng)
        noisy.append(catalog.hit_rate(*_read(embedder, y), bed, start / sr, config))
    row["copies under noise at 10 dB SNR"] = float(np.mean(noisy))
    wrong = [
        (_read(embedder, _clip(samples[r["path"]], n, rng))[0] @ catalog.vectors.T).max(axis=1)
        for r in unindexed
    ]
    row["unindexed clips: 99.9th percentile of best similarity"] = float(
        np.quantile(np.concatenate(wrong), 0.999)
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path, nargs="?", default=Path("../shared/audio"))
    parser.add_argument(
        "checkpoints", type=Path, nargs="*", help="checkpoints to compare with the shipped one"
    )
    args = parser.parse_args()
    indexed, unindexed = _split(args.audio_dir, quick=False)
    samples = {r["path"]: load(args.audio_dir / r["path"]).samples for r in indexed + unindexed}
    results = {
        str(path or "shipped"): measure(Embedder(path), indexed, unindexed, samples)
        for path in [None, *args.checkpoints]
    }
    names = list(next(iter(results.values())))
    print("| measure | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{row[name]:.3f}" for row in results.values()) + " |")


if __name__ == "__main__":
    main()
