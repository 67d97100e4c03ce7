"""Genre networks over log-mel windows: the GenreNet skeleton and its CNN, CRNN and VGG trunks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mirsearch.config import FeatureConfig
from mirsearch.features import log_mel
from mirsearch.matcher import (
    CNN_LAYERS,
    LEVEL_S,
    TIME_STRIDE,
    in_pieces,
    window_columns,
    window_step,
)


def concatenated(pieces: list[torch.Tensor]) -> torch.Tensor:
    """Feature-map pieces joined along time (`in_pieces`'s `concatenate`)."""
    return torch.cat(pieces, dim=-1)


def conv_block(c_in: int, c_out: int, *, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """Convolution (no bias), batch norm, ReLU: the block every trunk is built of."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class GenreNet(nn.Module):
    """Shared skeleton: mel front end → convolutional trunk → pooled embedding → genre head.

    The trunk is fully convolutional in time, so a whole track's feature map is computed once and
    every window's embedding is pooled from its columns (`TIME_STRIDE` mel frames each). `embed_*`
    is the network truncated before the head: an L2-normalised vector per window.
    """

    TIME_STRIDE = TIME_STRIDE  # mel frames per feature-map column

    def __init__(self, *, n_classes: int, embedding_dim: int, dropout: float, feature_config: dict):
        super().__init__()
        self.feature_config = FeatureConfig(**feature_config)
        self.embedding_dim = embedding_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, n_classes))

    # -- front end: the one log-mel function, then level removal (gain invariance) ------------
    def front_end(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, n_samples) waveform → (B, n_mels, n_frames) log-mel in dB."""
        return log_mel(waveform, self.feature_config)

    def normalise_level(self, mel_db: torch.Tensor) -> torch.Tensor:
        """Subtract the local level (frame means averaged over ±LEVEL_S), scale to unit-ish range.

        Local, so a clip and the track it was cut from see the same values away from the edges;
        a gain change shifts every dB value equally and cancels out.
        """
        frames = int(LEVEL_S * self.feature_config.frames_per_s)
        level = mel_db.mean(dim=-2, keepdim=True)
        level = F.avg_pool1d(
            level, 2 * frames + 1, stride=1, padding=frames, count_include_pad=False
        )
        return (mel_db - level) / 20.0

    # -- trunk (subclasses) -----------------------------------------------------------------
    def feature_map(self, mel_db: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, n_frames) → (B, C, n_frames // TIME_STRIDE) frequency-pooled features."""
        x = self.normalise_level(mel_db).unsqueeze(1)
        return in_pieces(
            lambda piece: (self.layers(piece).mean(dim=2),),
            x,
            (self.TIME_STRIDE,),
            concatenate=concatenated,
        )[0]

    # -- pooling, projection, head ----------------------------------------------------------
    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """(B, C, T') → (B, 2C): mean and max over time."""
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)

    def embed_map(self, h: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
        z = self.project(self.pool(h))
        return F.normalize(z, dim=-1) if normalise else z

    def window_columns(self, window_s: float) -> int:
        return window_columns(window_s, self.feature_config.frames_per_s)

    def embed_windows(self, mel_db: torch.Tensor, *, window_s: float, hop_s: float):
        """One track's (n_mels, n_frames) log-mel → (n, D) window embeddings and their starts (s).

        The feature map is computed once; window k pools the columns from round(k·hop) on.
        """
        return self.embed_windows_of(mel_db.unsqueeze(0), window_s=window_s, hop_s=hop_s)[0]

    def embed_windows_of(self, mel_dbs: torch.Tensor, *, window_s: float, hop_s: float):
        """`embed_windows` of each of several (B, n_mels, n_frames) log-mels of one length, the
        trunk run once on the batch."""
        return [self.windows_of_map(h, window_s, hop_s) for h in self.feature_map(mel_dbs)]

    def windows_of_map(self, h: torch.Tensor, window_s: float, hop_s: float):
        """(C, T') feature map → (n, D) window embeddings and their starts (s)."""
        windows, offsets_s = window_columns_of(
            h,
            self.window_columns(window_s),
            hop_s,
            self.TIME_STRIDE / self.feature_config.frames_per_s,
        )
        return self.embed_map(windows), offsets_s

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, n_samples) waveform windows → (B, n_classes) genre logits."""
        return self.head(self.embed_map(self.feature_map(self.front_end(waveform))))


def window_columns_of(h: torch.Tensor, width: int, hop_s: float, seconds_per_column: float):
    """(C, T') feature map → (n, C, width) windows `hop_s` apart, and their starts in seconds."""
    step = window_step(hop_s, seconds_per_column)
    starts = torch.arange(0, max(1, h.shape[-1] - width + 1), step)
    windows = h.unfold(-1, width, step).permute(1, 0, 2)
    return windows, starts[: windows.shape[0]].float() * seconds_per_column


class CNN(GenreNet):
    """Lean CNN: strided 5×5 stem, three strided blocks; frequency pooled, mean+max over time."""

    def __init__(
        self,
        *,
        n_classes: int,
        embedding_dim: int = 128,
        dropout: float = 0.3,
        channels: tuple[int, ...] = (24, 48, 96, 128),
        feature_config: dict,
    ):
        super().__init__(
            n_classes=n_classes,
            embedding_dim=embedding_dim,
            dropout=dropout,
            feature_config=feature_config,
        )
        c1, c2, c3, c4 = channels
        widths = (c1, c2, c2, c3, c3, c4)  # one per CNN_LAYERS entry (matcher.py runs them too)
        self.layers = nn.Sequential(
            *(
                conv_block(c_in, c_out, stride=stride, kernel=kernel)
                for c_in, c_out, (kernel, stride) in zip(
                    (1, *widths[:-1]), widths, CNN_LAYERS, strict=True
                )
            )
        )
        self.project = nn.Sequential(
            nn.Linear(2 * c4, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )


class CRNN(GenreNet):
    """Convolutional front end, then a bidirectional GRU over the feature-map columns."""

    def __init__(
        self,
        *,
        n_classes: int,
        embedding_dim: int = 128,
        dropout: float = 0.3,
        channels: tuple[int, ...] = (24, 48, 96, 96),
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
            conv_block(1, c1, stride=2, kernel=5),
            conv_block(c1, c2, stride=2),
            conv_block(c2, c3, stride=2),
            conv_block(c3, c4, stride=2),
        )
        self.gru = nn.GRU(c4, hidden, batch_first=True, bidirectional=True)
        self.project = nn.Sequential(
            nn.Linear(4 * hidden, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )

    def feature_map(self, mel_db: torch.Tensor) -> torch.Tensor:
        h = super().feature_map(mel_db).transpose(1, 2)  # (B, T', C)
        out, _ = self.gru(h)
        return out.transpose(1, 2)  # (B, 2·hidden, T')


class VGG(GenreNet):
    """Reference only: a plain 4-block VGG-style CNN (32→128 channels), for the benchmark."""

    def __init__(
        self,
        *,
        n_classes: int,
        embedding_dim: int = 128,
        dropout: float = 0.3,
        feature_config: dict,
    ):
        super().__init__(
            n_classes=n_classes,
            embedding_dim=embedding_dim,
            dropout=dropout,
            feature_config=feature_config,
        )
        blocks, c_in = [], 1
        for c_out in (32, 64, 128, 128):
            blocks += [conv_block(c_in, c_out), conv_block(c_out, c_out), nn.MaxPool2d(2)]
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.project = nn.Sequential(
            nn.Linear(2 * c_in, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )
