"""Genre networks over log-mel windows: the architectures and their registry (`build`)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from mirsearch.config import FeatureConfig
from mirsearch.errors import ModelError
from mirsearch.features import log_mel
from mirsearch.matcher import (
    CNN_LAYERS,
    LEVEL_S,
    TIME_STRIDE,
    in_pieces,
    window_columns,
    window_step,
)

log = logging.getLogger(__name__)

RHYTHM_LAGS = 32  # stem columns (16 a second): the rhythm profile spans lags up to 2 s


def _concatenated(pieces: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(pieces, dim=-1)


def _conv(c_in: int, c_out: int, *, stride: int = 1, kernel: int = 3) -> nn.Sequential:
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
    def front_end(self, waveform: torch.Tensor, *, frequency_scale: float = 1.0) -> torch.Tensor:
        """(B, n_samples) waveform → (B, n_mels, n_frames) log-mel in dB."""
        return log_mel(waveform, self.feature_config, frequency_scale=frequency_scale)

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
            concatenate=_concatenated,
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
                _conv(c_in, c_out, stride=stride, kernel=kernel)
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
            _conv(1, c1, stride=2, kernel=5),
            _conv(c1, c2, stride=2),
            _conv(c2, c3, stride=2),
            _conv(c3, c4, stride=2),
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
            blocks += [_conv(c_in, c_out), _conv(c_out, c_out), nn.MaxPool2d(2)]
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.project = nn.Sequential(
            nn.Linear(2 * c_in, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )


class Student(nn.Module):
    """The shipped network: a matching branch and a tagging branch over one log-mel.

    - `matcher`, a lean CNN trained for invariance (training.py): its window vectors find
      near-duplicates and line excerpts up in time.
    - the tagging branch, distilled from the musicnn teachers (distillation.py): it starts from
      the matcher's first three layers (its stem, shared and frozen: computed once for both
      branches) and goes on with wider layers of its own to a window embedding (the "sounds
      alike" vector) that feeds the teachers' tags (`tag_head`), a regression of their
      penultimate embeddings (`teacher_head`, training only) and optionally a user's own
      genres (`genre_head`, trained on the frozen embedding and, with `genre_rhythm`, on the
      track's rhythm profile too: see `rhythm_profile`).
    """

    TIME_STRIDE = GenreNet.TIME_STRIDE
    STEM_LAYERS = 3  # the matcher's layers the tagging branch starts from
    STEM_STRIDE = 4  # mel frames per stem column

    def __init__(
        self,
        *,
        n_tags: int,
        n_teacher: int = 400,
        n_genres: int = 0,
        genre_rhythm: bool = False,
        embedding_dim: int = 128,
        channels: tuple[int, ...] = (128, 192),
        folded: int = 256,
        dropout: float = 0.3,
        matcher_args: dict,
        feature_config: dict,
    ):
        super().__init__()
        self.arch_args = {
            "n_tags": n_tags,
            "n_teacher": n_teacher,
            "n_genres": n_genres,
            "genre_rhythm": genre_rhythm,
            "embedding_dim": embedding_dim,
            "channels": tuple(channels),
            "folded": folded,
            "dropout": dropout,
            "matcher_args": dict(matcher_args),
            "feature_config": dict(feature_config),
        }
        self.matcher = CNN(**matcher_args, feature_config=feature_config)
        self.feature_config = self.matcher.feature_config
        self.embedding_dim = self.matcher.embedding_dim
        stem_channels = self.matcher.layers[self.STEM_LAYERS - 1][0].out_channels
        c1, c2 = channels
        self.tag_layers = nn.Sequential(
            _conv(stem_channels, c1, stride=2),
            _conv(c1, c1),
            _conv(c1, c2, stride=2),
        )
        bins = -(-self.feature_config.n_mels // 16)  # frequency bins left after four strides
        self.tag_fold = nn.Sequential(
            nn.Conv1d(c2 * bins, folded, 1, bias=False), nn.BatchNorm1d(folded), nn.ReLU()
        )
        self.tag_project = nn.Sequential(
            nn.Linear(2 * folded, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )
        self.tag_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, n_tags))
        self.teacher_head = nn.Linear(embedding_dim, n_teacher)
        self.genre_rhythm = genre_rhythm
        genre_inputs = embedding_dim + (stem_channels * RHYTHM_LAGS if genre_rhythm else 0)
        self.genre_head = nn.Linear(genre_inputs, n_genres) if n_genres else None

    def front_end(self, waveform: torch.Tensor, *, frequency_scale: float = 1.0) -> torch.Tensor:
        return self.matcher.front_end(waveform, frequency_scale=frequency_scale)

    def embed_windows(self, mel_db: torch.Tensor, *, window_s: float, hop_s: float):
        """Matching vectors: see GenreNet.embed_windows."""
        return self.matcher.embed_windows(mel_db, window_s=window_s, hop_s=hop_s)

    def embed_windows_of(self, mel_dbs: torch.Tensor, *, window_s: float, hop_s: float):
        """Matching vectors of several log-mels: see GenreNet.embed_windows_of."""
        return self.matcher.embed_windows_of(mel_dbs, window_s=window_s, hop_s=hop_s)

    # -- tagging branch ---------------------------------------------------------------------
    def stem(self, mel_db: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, n_frames) → (B, C, n_mels / 4, n_frames / 4): the matcher's first layers."""
        x = self.matcher.normalise_level(mel_db).unsqueeze(1)
        return self.matcher.layers[: self.STEM_LAYERS](x)

    def tag_map(self, stem: torch.Tensor) -> torch.Tensor:
        """Stem features → (B, folded, n_frames // TIME_STRIDE) tagging features."""
        return self.tag_fold(self.tag_layers(stem).flatten(1, 2))

    def tag_embedding(self, h: torch.Tensor) -> torch.Tensor:
        """(B, folded, width) window columns → (B, D) embedding before normalisation."""
        return self.tag_project(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1))

    def tag_windows(self, mel_db: torch.Tensor, *, window_s: float, hop_s: float):
        """One track's (n_mels, n_frames) log-mel → (n, D) tagging embeddings, window starts."""
        return self._tag_windows_of(
            self.tag_map(self.stem(mel_db.unsqueeze(0)))[0], window_s, hop_s
        )

    def both_windows(self, mel_db: torch.Tensor, *, window_s: float, hop_s: float):
        """Matching vectors, their starts, tagging embeddings and the rhythm profile, the stem
        computed once (a long signal's in pieces: `in_pieces`)."""
        x = self.matcher.normalise_level(mel_db.unsqueeze(0)).unsqueeze(1)
        strides = (self.TIME_STRIDE, self.TIME_STRIDE, self.STEM_STRIDE)
        h, tags, beat = in_pieces(self._both_maps, x, strides, concatenate=_concatenated)
        vectors, offsets_s = self.matcher.windows_of_map(h[0], window_s, hop_s)
        z, _ = self._tag_windows_of(tags[0], window_s, hop_s)
        return vectors, offsets_s, z, rhythm_profile(beat[0])

    def _both_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A level-normalised (B, 1, n_mels, n_frames) log-mel → the matching map, the tagging
        map (both (B, C, n_frames // TIME_STRIDE)) and the stem averaged over frequency."""
        stem = self.matcher.layers[: self.STEM_LAYERS](x)
        h = self.matcher.layers[self.STEM_LAYERS :](stem).mean(dim=2)
        return h, self.tag_map(stem), stem.mean(dim=2)

    def _tag_windows_of(self, h: torch.Tensor, window_s: float, hop_s: float):
        """(folded, T') tagging map → (n, D) tagging embeddings and their starts (s)."""
        windows, offsets_s = window_columns_of(
            h,
            self.matcher.window_columns(window_s),
            hop_s,
            self.TIME_STRIDE / self.feature_config.frames_per_s,
        )
        return self.tag_embedding(windows), offsets_s


def rhythm_profile(stem: torch.Tensor) -> torch.Tensor:
    """(C, T) stem features averaged over frequency → (C · RHYTHM_LAGS,) how each channel
    repeats in time.

    Each stem channel is autocorrelated over the whole signal at lags
    of 1 to RHYTHM_LAGS columns and divided by its lag-0 energy: a tempo-and-pattern profile
    (where a groove's kicks, snares and hi-hats recur) that the window embeddings, pooled over
    3 s, keep little of. Genres defined by their grooves need it (README, model card).
    """
    x = stem - stem.mean(dim=-1, keepdim=True)
    # zero-padded by RHYTHM_LAGS: no lag wraps round, a short signal's lags past its end are 0
    size = x.shape[-1] + RHYTHM_LAGS
    power = torch.fft.rfft(x, size).abs().square()
    correlation = torch.fft.irfft(power, size)[:, : RHYTHM_LAGS + 1]
    return (correlation[:, 1:] / (correlation[:, :1] + 1e-6)).flatten()


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "cnn": CNN,
    "crnn": CRNN,
    "vgg": VGG,
    "student": Student,
}


def build(arch: str, **arch_args) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[arch](**arch_args)
    except TypeError as exc:
        raise ModelError(f"architecture {arch!r} does not take these arguments: {exc}") from exc
