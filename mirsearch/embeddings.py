"""Embedder: the trained genre network truncated before its head → window and track vectors."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirsearch.config import EmbeddingConfig, FeatureConfig
from mirsearch.errors import ModelError
from mirsearch.fingerprint import make_print
from mirsearch.nn import load_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    """What the network makes of one signal."""

    vectors: np.ndarray  # (n, D) float32, L2-normalised window embeddings
    offsets_s: np.ndarray  # (n,) float32, where each window starts
    track_vector: np.ndarray  # (D,) float32, the normalised mean of the windows
    probabilities: np.ndarray  # (n_classes,) whole-signal genre probabilities (mean of windows)
    window_probabilities: np.ndarray  # (n, n_classes)
    fingerprint: np.ndarray  # (bands, frames) uint8 verification print (see fingerprint.py)


class Embedder:
    """Loads a checkpoint once; `analyse` turns mono float32 samples into embeddings and genres."""

    def __init__(
        self,
        checkpoint_path: Path | None = None,
        *,
        config: EmbeddingConfig = EmbeddingConfig(),
        threads: int | None = None,
    ):
        checkpoint = load_checkpoint(checkpoint_path)
        if abs(checkpoint.window_s - config.window_s) > 1e-6:
            raise ModelError(
                f"the model was trained on {checkpoint.window_s} s windows but "
                f"EmbeddingConfig.window_s is {config.window_s} s"
            )
        if threads:
            torch.set_num_threads(threads)
        self.config = config
        self.model = checkpoint.model
        self.labels = checkpoint.labels
        self.model_hash = checkpoint.sha256
        self.metadata = checkpoint.metadata
        self.feature_config: FeatureConfig = checkpoint.feature_config
        self.dim = self.model.embedding_dim
        self._lock = threading.Lock()  # BatchNorm/GRU modules are not re-entrant across threads

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def analyse(
        self, samples: np.ndarray, *, hop_s: float | None = None, frequency_scale: float = 1.0
    ) -> Analysis:
        """Embed every window of `samples` (mono float32 at the model's rate), `hop_s` apart.

        A signal shorter than one window is zero-padded to one window. `frequency_scale` ≠ 1
        embeds the signal as if pitch-shifted by its inverse (see features.log_mel).
        """
        hop_s = self.config.hop_s if hop_s is None else hop_s
        window_n = int(self.config.window_s * self.sample_rate)
        x = np.asarray(samples, dtype=np.float32)
        if x.size < window_n:
            x = np.pad(x, (0, window_n - x.size))
        with self._lock, torch.inference_mode():
            mel_db = self.model.front_end(torch.from_numpy(x), frequency_scale=frequency_scale)
            vectors, offsets = self.model.embed_windows(
                mel_db, window_s=self.config.window_s, hop_s=hop_s
            )
            window_probabilities = torch.softmax(self.model.head(vectors), dim=-1)
        vectors_np = vectors.numpy().astype(np.float32)
        mean = vectors_np.mean(axis=0)
        track_vector = (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)
        window_p = window_probabilities.numpy().astype(np.float32)
        return Analysis(
            vectors=vectors_np,
            offsets_s=offsets.numpy().astype(np.float32),
            track_vector=track_vector,
            probabilities=window_p.mean(axis=0),
            window_probabilities=window_p,
            fingerprint=make_print(mel_db.numpy(), self.feature_config),
        )
