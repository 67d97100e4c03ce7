"""The shipped network: the Student's matching and tagging branches, and the rhythm profile."""

from __future__ import annotations

import torch
from torch import nn

from mirsearch.matcher import in_pieces
from mirsearch.nn import CNN, GenreNet, concatenated, conv_block, window_columns_of

RHYTHM_LAGS = 32  # stem columns (16 a second): the rhythm profile spans lags up to 2 s


class Student(nn.Module):
    """The shipped network: a matching branch and a tagging branch over one log-mel.

    - `matcher`, a lean CNN trained for invariance (trainer.py): its window vectors find
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
            conv_block(stem_channels, c1, stride=2),
            conv_block(c1, c1),
            conv_block(c1, c2, stride=2),
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

    def front_end(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.matcher.front_end(waveform)

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
        h, tags, beat = in_pieces(self._both_maps, x, strides, concatenate=concatenated)
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
    3 s, keep little of. Genres defined by their grooves need it (docs/model.md).
    """
    x = stem - stem.mean(dim=-1, keepdim=True)
    # zero-padded by RHYTHM_LAGS: no lag wraps round, a short signal's lags past its end are 0
    size = x.shape[-1] + RHYTHM_LAGS
    power = torch.fft.rfft(x, size).abs().square()
    correlation = torch.fft.irfft(power, size)[:, : RHYTHM_LAGS + 1]
    return (correlation[:, 1:] / (correlation[:, :1] + 1e-6)).flatten()
