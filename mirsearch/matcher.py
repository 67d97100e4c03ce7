"""The matching branch without torch: what `match` reads of a query (its window vectors at each
pitch hypothesis, and its print), the shipped network's convolutional matcher (nn.CNN, a
student's `matcher`) run in numpy on the weights read straight from the checkpoint.

A query process so starts without importing torch, ~2 s of the ~3 s a `mirsearch match` of a
few clips took on a 2-core machine. The layer plan, the level removal and the long-signal pieces
are defined here once, for nn.py as well; tests hold the two forward passes to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirsearch.config import EmbeddingConfig
from mirsearch.errors import ModelError
from mirsearch.fingerprint import make_print
from mirsearch.model_card import ModelCard, read_checkpoint, read_weights
from mirsearch.spectrogram import log_mels

CNN_LAYERS = ((5, 2), (3, 2), (3, 1), (3, 2), (3, 1), (3, 2))  # nn.CNN's (kernel, stride) each
TIME_STRIDE = 16  # mel frames per feature-map column: the product of CNN_LAYERS' strides
LEVEL_S = 1.5  # the level removed from the log-mel is averaged over ±LEVEL_S seconds
PIECE_COLUMNS = 512  # a long signal's trunk runs on pieces of this many map columns (~2 min)
PIECE_MARGIN = 8  # map columns of context either side of a piece (the trunk reaches < 2)
BATCH_NORM_EPS = 1e-5  # torch's BatchNorm default, which nn.py keeps


def in_pieces(trunk: Callable, x, strides: tuple[int, ...], *, concatenate: Callable) -> tuple:
    """`trunk(x)`, computed on pieces of `x`'s last (time) axis when it is long.

    `trunk` is fully convolutional in time and returns maps whose i-th has one column per
    `strides[i]` frames, (n_frames + s - 1) // s of them (what strided "same" convolutions
    give). A piece of PIECE_COLUMNS columns is computed with PIECE_MARGIN columns of context
    either side, beyond the trunk's reach, and only its own columns are kept: the maps of one
    pass (to float rounding), while the activations exist one piece at a time (an hour-long
    upload's three pitch hypotheses: 1.77 → 0.51 GB at the peak and 7.4 → 4.7 s, the pieces
    fitting the caches better). `concatenate` joins a map's pieces along the last axis.
    """
    coarsest = max(strides)
    step, margin, n = PIECE_COLUMNS * coarsest, PIECE_MARGIN * coarsest, x.shape[-1]
    if n <= step + margin:
        return trunk(x)
    pieces = []
    for start in range(0, n, step):
        low, end = max(0, start - margin), min(n, start + step)
        maps = trunk(x[..., low : min(n, end + margin)])
        pieces.append(
            [
                m[..., (start - low) // s : (start - low) // s + -(-(end - start) // s)]
                for m, s in zip(maps, strides, strict=True)
            ]
        )
    return tuple(concatenate(columns) for columns in zip(*pieces, strict=True))


def window_columns(window_s: float, frames_per_s: float) -> int:
    """Feature-map columns a window of `window_s` seconds pools (at least one)."""
    return max(1, round(window_s * frames_per_s / TIME_STRIDE))


def padded(samples: np.ndarray, config: EmbeddingConfig, sample_rate: int) -> np.ndarray:
    """float32 `samples`, zero-padded to one window (config.window_s) if shorter."""
    window_n = int(config.window_s * sample_rate)
    x = np.asarray(samples, dtype=np.float32)
    return np.pad(x, (0, window_n - x.size)) if x.size < window_n else x


def window_step(hop_s: float, seconds_per_column: float) -> int:
    """Columns between the starts of windows `hop_s` seconds apart (at least one)."""
    return max(1, round(hop_s / seconds_per_column))


@dataclass(frozen=True)
class Matching:
    """What a near-duplicate check reads of one signal at one pitch hypothesis."""

    vectors: np.ndarray  # (n, D) float32, L2-normalised matching window embeddings
    offsets_s: np.ndarray  # (n,) float32, where each window starts
    fingerprint: np.ndarray  # (bands, frames) float32 verification print in dB (fingerprint.py)
    # (bands, frames) how much each print cell is the music's own, 0-1 (repeating.py); None: all
    weights: np.ndarray | None = None


def matchings(reader, mel_dbs: np.ndarray, *, hop_s: float) -> list[Matching]:
    """Each of the (B, n_mels, T) log-mels `mel_dbs` as a near-duplicate check reads it: its
    matching windows `hop_s` apart (`reader`'s `windows_of`: a Matcher's or an
    embeddings.Embedder's) and its print."""
    return [
        Matching(vectors, offsets_s, make_print(mel_db, reader.feature_config))
        for (vectors, offsets_s), mel_db in zip(
            reader.windows_of(mel_dbs, hop_s=hop_s), mel_dbs, strict=True
        )
    ]


@dataclass(frozen=True)
class _Layer:
    """A convolution with its batch norm folded in, then ReLU, in channels-last order."""

    weights: np.ndarray  # (kernel · kernel · c_in, c_out) float32
    bias: np.ndarray  # (c_out,) float32
    kernel: int
    stride: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, H, W, c_in) → (B, H / stride, W / stride, c_out), "same" zero padding."""
        k, s, p = self.kernel, self.stride, self.kernel // 2
        padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        patches = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))
        patches = patches[:, ::s, ::s].transpose(0, 1, 2, 4, 5, 3)  # (B, H', W', k, k, c_in)
        y = patches.reshape(-1, self.weights.shape[0]) @ self.weights  # copied channels-last
        y += self.bias
        return np.maximum(y, 0.0, out=y).reshape(*patches.shape[:3], -1)


def _folded(weight: np.ndarray, bias: np.ndarray, norm: dict[str, np.ndarray]):
    """`weight` (c_out first) and `bias` of a layer followed by batch norm `norm` in eval mode,
    as one layer's."""
    scale = norm["weight"] / np.sqrt(norm["running_var"] + BATCH_NORM_EPS)
    weight = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    return weight.astype(np.float32), ((bias - norm["running_mean"]) * scale + norm["bias"])


def _group(weights: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


class Matcher:
    """A checkpoint's matching branch, loaded without torch; `matching` gives what
    Embedder.analyse gives of the same signal's matching vectors and print, to float rounding."""

    ARCHITECTURES = ("cnn", "student")  # the networks whose matching branch is an nn.CNN

    def __init__(
        self,
        checkpoint_path: Path | None = None,
        *,
        config: EmbeddingConfig = EmbeddingConfig(),
    ):
        data, card = read_checkpoint(checkpoint_path)
        if not self.runs(card):
            raise ModelError(f"a {card.arch!r} network's matching branch runs with torch only")
        card.check_window(config.window_s)
        weights = read_weights(data, "matcher." if card.arch == "student" else "")
        self.card, self.config = card, config
        self.feature_config = card.feature_config
        self.layers = []
        for i, (kernel, stride) in enumerate(CNN_LAYERS):
            w, b = _folded(weights[f"layers.{i}.0.weight"], 0.0, _group(weights, f"layers.{i}.1."))
            w = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])  # (k, k, c_in) rows, c_out columns
            self.layers.append(
                _Layer(np.ascontiguousarray(w), b.astype(np.float32), kernel, stride)
            )
        self.project = _folded(
            weights["project.0.weight"], weights["project.0.bias"], _group(weights, "project.1.")
        )
        self.window_columns = window_columns(config.window_s, self.feature_config.frames_per_s)

    @classmethod
    def runs(cls, card: ModelCard) -> bool:
        """Whether this class runs the matching branch of the checkpoint `card` describes."""
        return card.arch in cls.ARCHITECTURES

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def matching(
        self, samples: np.ndarray, *, hop_s: float, frequency_scales: Sequence[float]
    ) -> list[Matching]:
        """What a near-duplicate check reads of `samples` (mono float32 at the model's rate) at
        each frequency scale (its pitch hypotheses, see spectrogram.log_mels), windows `hop_s`
        apart; the STFT taken once and the trunk run once on all of them. A signal shorter than
        one window is zero-padded to one window."""
        mel_dbs = log_mels(
            padded(samples, self.config, self.sample_rate), self.feature_config, frequency_scales
        )
        return matchings(self, mel_dbs, hop_s=hop_s)

    def windows_of(
        self, mel_dbs: np.ndarray, *, hop_s: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(B, n_mels, T) log-mels of one length → each one's L2-normalised matching window
        vectors (n, D) `hop_s` apart and their starts (n,) in seconds; the trunk run once on
        all."""
        maps = in_pieces(
            self._trunk,
            self._level_removed(mel_dbs),
            (TIME_STRIDE,),
            concatenate=lambda parts: np.concatenate(parts, axis=-1),
        )[0]
        return [self._windows(h, hop_s) for h in maps]

    def _level_removed(self, mel_db: np.ndarray) -> np.ndarray:
        """(B, n_mels, T) → the local level (frame means averaged over ±LEVEL_S, fewer frames at
        the edges) subtracted, scaled to a unit-ish range: nn.GenreNet.normalise_level."""
        reach, n = int(LEVEL_S * self.feature_config.frames_per_s), mel_db.shape[-1]
        sums = np.cumsum(mel_db.mean(axis=-2, dtype=np.float64), axis=-1)
        sums = np.concatenate([np.zeros_like(sums[..., :1]), sums], axis=-1)
        t = np.arange(n)
        low, high = np.maximum(t - reach, 0), np.minimum(t + reach + 1, n)
        level = (sums[..., high] - sums[..., low]) / (high - low)
        return ((mel_db - level[..., None, :]) / 20.0).astype(np.float32)

    def _trunk(self, x: np.ndarray) -> tuple[np.ndarray]:
        """(B, n_mels, T) → ((B, C, T / TIME_STRIDE) frequency-averaged features,)."""
        h = x[..., None]  # channels last: (B, H = mel bands, W = frames, 1)
        for layer in self.layers:
            h = layer(h)
        return (np.swapaxes(h.mean(axis=1), -1, -2),)

    def _windows(self, h: np.ndarray, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(C, T') feature map → (n, D) L2-normalised window vectors and their starts (s)."""
        seconds_per_column = TIME_STRIDE / self.feature_config.frames_per_s
        width, step = self.window_columns, window_step(hop_s, seconds_per_column)
        windows = np.lib.stride_tricks.sliding_window_view(h, width, axis=-1)[:, ::step]
        pooled = np.concatenate([windows.mean(axis=-1), windows.max(axis=-1)], axis=0).T
        weight, bias = self.project
        z = pooled @ weight.T + bias
        z /= np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
        starts = np.arange(z.shape[0], dtype=np.float32) * step * seconds_per_column
        return z.astype(np.float32), starts
