"""Embedder: the shipped network truncated before its heads → window and track vectors, tags.

With the shipped student (student.Student) a signal gives two kinds of vector: matching vectors per
window (near-duplicates, excerpts lined up in time) and a "sounds alike" track vector, the
normalised mean of the tagging branch's window embeddings; plus tag probabilities and genre
probabilities read off the tags (vocabulary.py), or off a user's genre head when the checkpoint
has one. A plain CNN checkpoint (`mirsearch train` on a user's labels) gives its genres, no tags,
and the mean of its window vectors as the track vector.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mirsearch.checkpoints import load_checkpoint
from mirsearch.config import AudioConfig, EmbeddingConfig, FeatureConfig
from mirsearch.features import log_mels
from mirsearch.fingerprint import make_print
from mirsearch.levels import heard_windows, sounding_windows
from mirsearch.matcher import Matching, matchings, padded
from mirsearch.student import Student
from mirsearch.vocabulary import GENRES, genre_scores


@dataclass(frozen=True)
class Analysis:
    """What the network makes of one signal."""

    vectors: np.ndarray  # (n, D) float32, L2-normalised matching window embeddings
    offsets_s: np.ndarray  # (n,) float32, where each window starts
    track_vector: np.ndarray  # (D,) float32, L2-normalised "sounds alike" vector
    probabilities: np.ndarray  # (n_genres,) whole-signal genre probabilities
    window_probabilities: np.ndarray  # (n, n_genres)
    tag_probabilities: np.ndarray  # (n_tags,) whole-signal tag probabilities (empty: no tags)
    sounding: np.ndarray  # (n,) bool: the windows averaged into the track vector, tags, genres
    rhythm: np.ndarray  # (R,) float32 rhythm profile (student.rhythm_profile; empty: not a student)
    fingerprint: np.ndarray  # (bands, frames) float32 verification print in dB (fingerprint.py)
    mel_db: torch.Tensor  # (n_mels, n_frames) the log-mel all of it comes from (features.log_mel)


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX tiles). There the
    network's convolutions take half the time (an 83 s track: 78 → 39 ms on one core) and its
    vectors stay within cosine 0.9999 of float32's; elsewhere oneDNN would emulate bfloat16,
    slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def for_inference(model: nn.Module) -> nn.Module:
    """A copy of `model` to run, not to train or save: every convolution followed by a batch
    norm has the norm folded into its weights, and the weights are in channels-last order.
    The same outputs to float rounding (window vectors within 4e-7) in ~80 % of the time on a
    CPU without bfloat16 (an 83 s track, both branches of the student: 137 → 109 ms; a 10 s
    query at three pitch hypotheses: 27.5 → 21.9 ms)."""
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if (
            isinstance(block, nn.Sequential)
            and len(block) > 1
            and isinstance(block[0], nn.Conv1d | nn.Conv2d)
            and isinstance(block[1], nn.BatchNorm1d | nn.BatchNorm2d)
        ):
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
    return model.to(memory_format=torch.channels_last)


class Embedder:
    """Loads a checkpoint once; `analyse` turns mono float32 samples into embeddings and genres,
    `matching` into what a near-duplicate check reads (at one or several pitch hypotheses)."""

    def __init__(
        self,
        checkpoint_path: Path | None = None,
        *,
        config: EmbeddingConfig = EmbeddingConfig(),
        threads: int | None = None,
        silence_dbfs: float = AudioConfig.silence_dbfs,
    ):
        if threads:  # before any tensor work: a forked worker must never reach for more threads
            torch.set_num_threads(threads)
            # numpy's BLAS too (the log-mel's filterbank, the descriptors): two indexing workers
            # each left with OpenBLAS's thread a core, spinning between calls, took 10-25 % more
            # CPU over ../shared/audio
            threadpool_limits(threads, user_api="blas")
        checkpoint = load_checkpoint(checkpoint_path)
        checkpoint.card.check_window(config.window_s)
        self.config, self.silence_dbfs = config, silence_dbfs
        self.checkpoint = checkpoint  # what it was loaded from (heads.py saves a copy with a head)
        self.card = checkpoint.card
        self.model = for_inference(checkpoint.model)
        self.feature_config: FeatureConfig = self.card.feature_config
        self.dim = self.model.embedding_dim
        self.is_student = isinstance(self.model, Student)
        self.tag_labels: list[str] = self.card.labels if self.is_student else []
        if not self.is_student:
            self.labels = self.card.labels
        elif self.model.genre_head is not None:
            self.labels = list(self.card.metadata["genre_labels"])
        else:
            self.labels = list(GENRES)
        self._lock = threading.Lock()  # BatchNorm/GRU modules are not re-entrant across threads
        self.bfloat16 = config.bfloat16 and native_bfloat16()

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def analyse(self, samples: np.ndarray, *, hop_s: float | None = None) -> Analysis:
        """Embed every window of `samples` (mono float32 at the model's rate), `hop_s` apart.

        The track vector, tags and genres are averaged over the windows that are sound, not in a
        pause (levels.heard_windows: all of them where none is): a silent lead-in had turned
        an orchestral clip's genre to electronic. A signal shorter than one window is zero-padded
        to one window.
        """
        hop_s = self.config.hop_s if hop_s is None else hop_s
        x = padded(samples, self.config, self.sample_rate)
        window_s = self.config.window_s
        with self._lock, torch.inference_mode():
            mel_db = self.model.front_end(torch.from_numpy(x))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                if self.is_student:
                    vectors, offsets, z, rhythm = self.model.both_windows(
                        mel_db, window_s=window_s, hop_s=hop_s
                    )
                    z, rhythm = z.float(), rhythm.float()
                else:
                    vectors, offsets = self.model.embed_windows(
                        mel_db, window_s=window_s, hop_s=hop_s
                    )
                    rhythm = torch.zeros(0)
            # float32 from here on; normalised again, as bfloat16 leaves norms up to 0.3 % off
            vectors = F.normalize(vectors.float(), dim=-1)
            sounding = heard_windows(
                sounding_windows(
                    x,
                    offsets.numpy(),
                    window_s,
                    sample_rate=self.sample_rate,
                    silence_dbfs=self.silence_dbfs,
                )
            )
            heard = torch.from_numpy(sounding)
            if not self.is_student:
                track = F.normalize(vectors[heard].mean(dim=0), dim=0)
                window_p = torch.softmax(self.model.head(vectors), dim=-1).numpy()
                probabilities, tags = window_p[sounding].mean(axis=0), np.zeros(0, np.float32)
            else:
                track = F.normalize(F.normalize(z[heard], dim=-1).mean(dim=0), dim=0)
                window_tags = torch.sigmoid(self.model.tag_head(z)).numpy()
                tags = window_tags[sounding].mean(axis=0)
                if self.model.genre_head is None:  # genres read off the tags
                    window_p = genre_scores(window_tags, self.tag_labels)
                    probabilities = genre_scores(tags, self.tag_labels)
                else:  # the user's head, on the same inputs it was trained on (heads.py)
                    windows, whole = F.normalize(z, dim=-1), track
                    if self.model.genre_rhythm:  # a window is judged by its track's rhythm
                        windows = torch.cat([windows, rhythm.expand(len(windows), -1)], dim=-1)
                        whole = torch.cat([track, rhythm])
                    window_p = torch.softmax(self.model.genre_head(windows), dim=-1).numpy()
                    probabilities = torch.softmax(self.model.genre_head(whole), dim=-1).numpy()
        track_vector = track.numpy().astype(np.float32)
        return Analysis(
            vectors=vectors.numpy().astype(np.float32),
            offsets_s=offsets.numpy().astype(np.float32),
            track_vector=track_vector,
            probabilities=np.asarray(probabilities, dtype=np.float32),
            window_probabilities=np.asarray(window_p, dtype=np.float32),
            tag_probabilities=np.asarray(tags, dtype=np.float32),
            sounding=sounding,
            rhythm=rhythm.numpy().astype(np.float32),
            fingerprint=make_print(mel_db.numpy(), self.feature_config),
            mel_db=mel_db,
        )

    def matching(
        self, samples: np.ndarray, *, hop_s: float, frequency_scales: Sequence[float]
    ) -> list[Matching]:
        """What a near-duplicate check reads of `samples` at each frequency scale (its pitch
        hypotheses, see features.log_mel): the matching vectors and the print, no tags, genres
        or track vector; the STFT taken once and the network run once on all of them. `match`
        reads with matcher.Matcher instead (numpy, no torch) where the matching branch is a CNN."""
        x = padded(samples, self.config, self.sample_rate)
        with self._lock, torch.inference_mode():
            mel_dbs = log_mels(torch.from_numpy(x), self.feature_config, frequency_scales).numpy()
        return matchings(self, mel_dbs, hop_s=hop_s)

    def windows_of(
        self, mel_dbs: np.ndarray, *, hop_s: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """matcher.Matcher.windows_of, by the network (torch)."""
        with self._lock, torch.inference_mode():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                windows = self.model.embed_windows_of(
                    torch.from_numpy(np.ascontiguousarray(mel_dbs)),
                    window_s=self.config.window_s,
                    hop_s=hop_s,
                )
            return [
                (
                    F.normalize(vectors.float(), dim=-1).numpy(),  # as in analyse
                    offsets.numpy().astype(np.float32),
                )
                for vectors, offsets in windows
            ]
