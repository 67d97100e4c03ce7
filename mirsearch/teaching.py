"""The teachers' outputs on the training music, cached per file (`teach`), and which music that is.

The teachers (teacher.py, ~20× real time per core) tag 3 s patches of each training file once;
their tag probabilities and penultimate embeddings are cached beside the file's log-mel, keyed by
the file's content hash, so a retrain computes neither again.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirsearch.audio import load
from mirsearch.config import AudioConfig, FeatureConfig
from mirsearch.datasets import contrastive_files
from mirsearch.errors import MirsearchError
from mirsearch.features import log_mel
from mirsearch.teacher import TEACHER_FEATURES, tag_signal

PATCH_HOP_S = 3.0  # the teachers tag back-to-back 3 s patches; patch k starts at k·3 s
TRAINING_HOP_S = 3.0  # on training music, back-to-back patches ...
MAX_PATCHES = 32  # ... and at most this many of one file, spread over it (16 every 6 s: tag
# ROC-AUC 0.887 against the teachers on unseen packages; 32 every 3 s: 0.903)
MAX_MUSIC_FILES = 500  # fetched files used (all 434 today), taken in turn from each package
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Taught:
    """One file as the student trains on it: its log-mel and what the teachers said."""

    path: str
    mel_db: np.ndarray  # (n_mels, n_frames) float16, the student's own log-mel
    tags: np.ndarray  # (n_patches, 100) float32 teacher tag probabilities
    penultimate: np.ndarray  # (n_patches, 400) float32 teacher penultimate embeddings
    patch_hop_s: float


def _cache_key(path: Path, feature_config: FeatureConfig, hop_s: float, max_patches) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    settings = (CACHE_FORMAT, hop_s, feature_config) + ((max_patches,) if max_patches else ())
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:32]


def teach(
    path: Path,
    cache_dir: Path,
    *,
    feature_config: FeatureConfig,
    hop_s: float = PATCH_HOP_S,
    max_patches: int | None = None,
) -> Taught:
    """The teachers' outputs on 3 s patches `hop_s` apart (further apart if that gives more than
    `max_patches`), and the student's log-mel, for one file; from the cache if there."""
    cached = Path(cache_dir) / f"{_cache_key(path, feature_config, hop_s, max_patches)}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return Taught(str(path), z["mel_db"], z["tags"], z["penultimate"], float(z["hop_s"]))
    if feature_config.sample_rate != TEACHER_FEATURES.sample_rate:
        raise ValueError("the student and the teachers must read audio at the same rate")
    samples = load(path, config=AudioConfig(sample_rate=feature_config.sample_rate)).samples
    if max_patches:
        duration_s = samples.size / feature_config.sample_rate
        hop_s = max(hop_s, round((duration_s - 3.0) / max(1, max_patches - 1), 2))
    tags, penultimate = tag_signal(samples, hop_s=hop_s)
    mel_db = log_mel(torch.from_numpy(samples), feature_config).numpy().astype(np.float16)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, mel_db=mel_db, tags=tags, penultimate=penultimate, hop_s=hop_s)
    tmp.replace(cached)
    return Taught(str(path), mel_db, tags, penultimate, hop_s)


def music_files(folder: Path, *, limit: int = MAX_MUSIC_FILES, seed: int = 0) -> list[Path]:
    """Up to `limit` audio files of a training-music folder (its manifest.tsv), taken in turn
    from each package in a seeded order, so no one soundtrack dominates."""
    manifest = Path(folder) / "manifest.tsv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_package: dict[str, list[Path]] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        by_package.setdefault(row["package"], []).append(Path(folder) / row["path"])
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(files)) for _, files in sorted(by_package.items())]
    chosen: list[Path] = []
    while len(chosen) < limit and any(queues):
        chosen += [queue.pop(0) for queue in queues if queue][: limit - len(chosen)]
    return chosen


def default_training_files(shared_dir: Path, music_dir: Path):
    """The shipped recipe's music, each with its patch hop and most patches: the ../shared/audio
    packages the model may hear (tagged every 3 s, as the evaluation needs them; the other
    packages stay unseen) and the fetched training music (every 3 s, at most 32 per file)."""
    files = [(p, PATCH_HOP_S, None) for p in contrastive_files(Path(shared_dir) / "audio")]
    files += [(p, TRAINING_HOP_S, MAX_PATCHES) for p in music_files(music_dir)]
    if not files:
        raise MirsearchError(
            f"no training music: neither {shared_dir}/audio nor {music_dir}/manifest.tsv "
            "(run scripts/fetch_training_music.py)"
        )
    return files
