"""Genre networks over log-mel windows (a registry), and self-describing checkpoints."""

from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mirsearch.config import AudioConfig, FeatureConfig
from mirsearch.errors import ModelError
from mirsearch.features import log_mel

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
REQUIRED_KEYS = ("format", "arch", "arch_args", "labels", "feature_config", "window_s", "state_dict")
LEVEL_S = 1.5  # the normaliser removes means taken over ±LEVEL_S seconds around each frame
ASSETS = Path(__file__).resolve().parent / "assets"


def default_checkpoint_path() -> Path:
    return ASSETS / "genre_cnn.pt"


def _conv(c_in: int, c_out: int, *, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TemporalBlock(nn.Module):
    """Residual 1-D convolution over feature-map columns: context beyond the conv receptive field."""

    def __init__(self, channels: int, *, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.norm(self.conv(h)))


def moving_mean(x: torch.Tensor, *, radius: int) -> torch.Tensor:
    """Mean of x over [t - radius, t + radius] along the last axis (edges: the part that exists)."""
    padded = F.pad(x.double().cumsum(-1), (1, 0))
    n = x.shape[-1]
    hi = torch.clamp(torch.arange(n, device=x.device) + radius + 1, max=n)
    lo = torch.clamp(torch.arange(n, device=x.device) - radius, min=0)
    return ((padded[..., hi] - padded[..., lo]) / (hi - lo)).to(x.dtype)


class GenreNet(nn.Module):
    """Shared skeleton: mel front end → normaliser → conv trunk → pooled embedding → genre head.

    The trunk is fully convolutional in time, so a whole track's feature map is computed once and
    every window's embedding is pooled from its columns (`TIME_STRIDE` mel frames each).
    Subclasses define `layers` (2-D, 2 input channels, frequency pooled at the end), `temporal`
    (over columns) and `width` (channels of the feature map).
    """

    TIME_STRIDE = 16  # mel frames per feature-map column

    def __init__(self, *, n_classes: int, embedding_dim: int, dropout: float, feature_config: dict):
        super().__init__()
        self.feature_config = FeatureConfig(**feature_config)
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.n_classes = n_classes

    def _finish(self, width: int) -> None:
        """Projection and head, once the subclass knows its feature-map width."""
        self.project = nn.Sequential(nn.Linear(2 * width, self.embedding_dim))
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.embedding_dim, self.n_classes))

    # -- front end: the one log-mel function -------------------------------------------------
    def front_end(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., n_samples) float32 waveform → (..., n_mels, n_frames) log-mel in dB."""
        return log_mel(waveform, self.feature_config)

    def normalise(self, mel_db: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) dB → (B, 2, n_mels, T): two local instance normalisations.

        Channel 0 removes each band's mean over ±LEVEL_S (a fixed filter or EQ adds a constant
        per band in dB, so it cancels); channel 1 removes the frame level's mean over ±LEVEL_S
        (gain cancels, the spectral envelope stays). Local, so a window inside a whole track and
        the same music in a short clip see the same values away from the clip's edges.
        """
        radius = int(LEVEL_S * self.feature_config.frames_per_s)
        band = mel_db - moving_mean(mel_db, radius=radius)
        level = mel_db - moving_mean(mel_db.mean(dim=-2, keepdim=True), radius=radius)
        return torch.stack([band, level], dim=1) / 20.0

    # -- trunk: 2-D convolutions, frequency pooled, then context over time -------------------
    def feature_map(self, mel_db: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, n_frames) → (B, width, ceil(n_frames / TIME_STRIDE)) column features."""
        h = self.layers(self.normalise(mel_db)).mean(dim=2)
        return self.temporal(h)

    # -- pooling and projection: the embedding ---------------------------------------------
    def embed_map(self, h: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
        """(B, width, columns) → (B, D) embedding: mean and max over time, projected."""
        z = self.project(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1))
        return F.normalize(z, dim=-1) if normalise else z

    def embed_log_mel(self, mel_db: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
        """(B, n_mels, n_frames) log-mel windows → (B, D) L2-normalised embeddings."""
        return self.embed_map(self.feature_map(mel_db), normalise=normalise)

    def window_columns(self, window_s: float) -> int:
        return max(1, round(window_s * self.feature_config.frames_per_s / self.TIME_STRIDE))

    @property
    def seconds_per_column(self) -> float:
        return self.TIME_STRIDE / self.feature_config.frames_per_s

    def embed_windows(self, mel_db: torch.Tensor, *, window_s: float, hop_s: float):
        """One track's (n_mels, n_frames) log-mel → ((n, D) window embeddings, (n,) starts in s).

        The feature map is computed once; window k pools the columns from round(k·hop) on.
        """
        h = self.feature_map(mel_db.unsqueeze(0))[0]  # (width, columns)
        width = self.window_columns(window_s)
        step = max(1, round(hop_s / self.seconds_per_column))
        if h.shape[-1] < width:
            h = F.pad(h, (0, width - h.shape[-1]), mode="replicate")
        windows = h.unfold(-1, width, step).permute(1, 0, 2)  # (n, width, columns)
        offsets_s = torch.arange(windows.shape[0]).float() * step * self.seconds_per_column
        return self.embed_map(windows), offsets_s

    # -- head ------------------------------------------------------------------------------
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, n_samples) waveform windows → (B, n_classes) genre logits."""
        return self.head(self.embed_log_mel(self.front_end(waveform)))


class CNN(GenreNet):
    """Lean CNN: strided 5×5 stem, strided 3×3 blocks, two dilated temporal blocks."""

    def __init__(
        self,
        *,
        n_classes: int,
        embedding_dim: int = 128,
        dropout: float = 0.3,
        channels: tuple[int, ...] = (24, 48, 64, 128),
        feature_config: dict,
    ):
        super().__init__(
            n_classes=n_classes,
            embedding_dim=embedding_dim,
            dropout=dropout,
            feature_config=feature_config,
        )
        c1, c2, c3, c4 = channels
        self.layers = nn.Sequential(
            _conv(2, c1, stride=2, kernel=5),
            _conv(c1, c2, stride=2),
            _conv(c2, c3, stride=2),
            _conv(c3, c3),
            _conv(c3, c4, stride=2),
        )
        self.temporal = nn.Sequential(TemporalBlock(c4, dilation=1), TemporalBlock(c4, dilation=2))
        self._finish(c4)


class CRNN(GenreNet):
    """Convolutional front end, then a bidirectional GRU over the feature-map columns."""

    def __init__(
        self,
        *,
        n_classes: int,
        embedding_dim: int = 128,
        dropout: float = 0.3,
        channels: tuple[int, ...] = (24, 48, 64, 96),
        hidden: int = 64,
        feature_config: dict,
    ):
        super().__init__(
            n_classes=n_classes,
            embedding_dim=embedding_dim,
            dropout=dropout,
            feature_config=feature_config,
        )
        c1, c2, c3, c4 = channels
        self.layers = nn.Sequential(
            _conv(2, c1, stride=2, kernel=5),
            _conv(c1, c2, stride=2),
            _conv(c2, c3, stride=2),
            _conv(c3, c4, stride=2),
        )
        self.gru = nn.GRU(c4, hidden, batch_first=True, bidirectional=True)
        self.temporal = nn.Identity()
        self._finish(2 * hidden)

    def feature_map(self, mel_db: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.normalise(mel_db)).mean(dim=2).transpose(1, 2)  # (B, T', C)
        out, _ = self.gru(h)
        return out.transpose(1, 2)  # (B, 2·hidden, T')


class VGG(GenreNet):
    """Reference only: a plain 4-block VGG-style CNN (32→128 channels), for the benchmark."""

    def __init__(
        self, *, n_classes: int, embedding_dim: int = 128, dropout: float = 0.3, feature_config: dict
    ):
        super().__init__(
            n_classes=n_classes,
            embedding_dim=embedding_dim,
            dropout=dropout,
            feature_config=feature_config,
        )
        blocks, c_in = [], 2
        for c_out in (32, 64, 128, 128):
            blocks += [_conv(c_in, c_out), _conv(c_out, c_out), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.temporal = nn.Identity()
        self._finish(c_in)


ARCHITECTURES: dict[str, type[GenreNet]] = {"cnn": CNN, "crnn": CRNN, "vgg": VGG}


def build(arch: str, **arch_args) -> GenreNet:
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[arch](**arch_args)
    except TypeError as exc:
        raise ModelError(f"architecture {arch!r} does not take these arguments: {exc}") from exc
