"""The musicnn taggers (MTG, UPF) ported to PyTorch: the teachers the shipped student learns from.

Architecture of Pons & Serra's musicnn (ISMIR 2019 LBD), as in the `musicnn` 0.1.0 wheel:
a front end of vertical (timbral, 7×38 and 7×67 mel bins) and horizontal (temporal, 128/64/32
frames) filters max-pooled over frequency; a mid end of three 1-D convolutions with residual
connections, densely concatenated; a back end of max + mean pooling over time, a 200-unit dense
layer (the penultimate embedding) and 50 sigmoid tags. Weights come from `make teacher`
(scripts/convert_musicnn.py) and keep TensorFlow's names; `assets/teachers/LICENSE` tells their
origin. Input: librosa's mel at 16 kHz (n_fft 512, hop 256, 96 slaney bands), log10(10000·x + 1),
in patches of 187 frames (3 s). musicnn itself computes that in float16, where 10000·x overflows
to infinity on loud music (mel power above 6.55) and the taggers then answer the same for every
such patch; we compute it in float32, which is what the weights were trained to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mirsearch.config import FeatureConfig
from mirsearch.errors import ModelError
from mirsearch.features import mel_power

TEACHERS_DIR = Path(__file__).resolve().parent / "assets" / "teachers"
TEACHER_NAMES = ("msd", "mtt")  # Million Song Dataset (Last.fm tags), MagnaTagATune
TEACHER_FEATURES = FeatureConfig(
    sample_rate=16_000,
    n_fft=512,
    hop_length=256,
    n_mels=96,
    f_min=0.0,
    f_max=8_000.0,
    mel_scale="slaney",
    norm="slaney",
    pad_mode="constant",
)
PATCH_FRAMES = 187  # 3 s at hop 256
PATCH_SAMPLES = (PATCH_FRAMES - 1) * TEACHER_FEATURES.hop_length
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default


def teacher_input(waveform: torch.Tensor) -> torch.Tensor:
    """(..., n_samples) 16 kHz float → (..., n_frames, 96) musicnn's compressed mel (float32)."""
    mel = mel_power(waveform, TEACHER_FEATURES).transpose(-1, -2)
    return torch.log10(10_000.0 * mel + 1.0)


def _same_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for an even or odd kernel: the extra frame goes after."""
    return (kernel - 1) // 2, kernel // 2


class Musicnn(nn.Module):
    """(B, 187, 96) compressed mel patches → tag logits (B, 50) and penultimate (B, 200)."""

    def __init__(self, *, n_mels: int = 96, n_tags: int = 50, midend: int = 64, units: int = 200):
        super().__init__()
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPSILON)
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, timbral, (7, int(share * n_mels))) for share in (0.4, 0.7)
        )
        self.timbral_bn = nn.ModuleList(nn.BatchNorm2d(timbral, eps=BN_EPSILON) for _ in range(2))
        self.temporal_kernels = (128, 64, 32)
        self.temporal = nn.ModuleList(nn.Conv2d(1, temporal, (k, 1)) for k in self.temporal_kernels)
        self.temporal_bn = nn.ModuleList(nn.BatchNorm2d(temporal, eps=BN_EPSILON) for _ in range(3))
        front = 2 * timbral + 3 * temporal
        self.mid = nn.ModuleList(nn.Conv1d(c, midend, 7) for c in (front, midend, midend))
        self.mid_bn = nn.ModuleList(nn.BatchNorm1d(midend, eps=BN_EPSILON) for _ in range(3))
        pooled = 2 * (front + 3 * midend)
        self.pool_bn = nn.BatchNorm1d(pooled, eps=BN_EPSILON)
        self.dense = nn.Linear(pooled, units)
        self.dense_bn = nn.BatchNorm1d(units, eps=BN_EPSILON)
        self.out = nn.Linear(units, n_tags)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # -- front end: timbral and temporal filters, each max-pooled over frequency ----------
        x = self.input_bn(patches.unsqueeze(1))  # (B, 1, T, F)
        padded = F.pad(x, (0, 0, 3, 3))
        maps = [
            bn(F.relu(conv(padded))).amax(dim=-1)
            for conv, bn in zip(self.timbral, self.timbral_bn, strict=True)
        ]
        for kernel, conv, bn in zip(
            self.temporal_kernels, self.temporal, self.temporal_bn, strict=True
        ):
            maps.append(bn(F.relu(conv(F.pad(x, (0, 0, *_same_pad(kernel)))))).amax(dim=-1))
        front = torch.cat(maps, dim=1)  # (B, 561, T)
        # -- mid end: three convolutions, the last two residual; all layers concatenated -------
        layers, h = [front], front
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn, strict=True)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))))
            h = y if i == 0 else y + h
            layers.append(h)
        mid = torch.cat(layers, dim=1)  # (B, 753, T)
        # -- back end: max and mean over time (interleaved, as TF flattens them), dense --------
        pooled = torch.stack([mid.amax(dim=-1), mid.mean(dim=-1)], dim=-1).flatten(1)
        penultimate = F.relu(self.dense(self.pool_bn(pooled)))
        return self.out(self.dense_bn(penultimate)), penultimate


def _load_bn(bn: nn.Module, weights: dict, name: str) -> None:
    bn.weight.data.copy_(weights[f"{name}/gamma"].reshape(-1))
    bn.bias.data.copy_(weights[f"{name}/beta"].reshape(-1))
    bn.running_mean.copy_(weights[f"{name}/moving_mean"].reshape(-1))
    bn.running_var.copy_(weights[f"{name}/moving_variance"].reshape(-1))


def _load_conv(conv: nn.Module, weights: dict, name: str) -> None:
    kernel = weights[f"{name}/kernel"]  # TF: (time, freq, in, out)
    if isinstance(conv, nn.Conv1d):  # TF convolved (time, all channels) with one input plane
        conv.weight.data.copy_(kernel[:, :, 0, :].permute(2, 1, 0))
    else:
        conv.weight.data.copy_(kernel.permute(3, 2, 0, 1))
    conv.bias.data.copy_(weights[f"{name}/bias"])


def load_weights(model: Musicnn, weights: dict[str, torch.Tensor]) -> Musicnn:
    """Fill a Musicnn from the TF variables (the order TF created them in names its layers)."""
    bns = [model.input_bn, *model.timbral_bn, *model.temporal_bn, *model.mid_bn, model.pool_bn]
    for i, bn in enumerate([*bns, model.dense_bn]):
        _load_bn(bn, weights, "batch_normalization" + (f"_{i}" if i else ""))
    for i, conv in enumerate([*model.timbral, *model.temporal, *model.mid]):
        _load_conv(conv, weights, "conv2d" + (f"_{i}" if i else ""))
    for layer, name in ((model.dense, "dense"), (model.out, "dense_1")):
        layer.weight.data.copy_(weights[f"{name}/kernel"].T)
        layer.bias.data.copy_(weights[f"{name}/bias"])
    return model.eval()


@dataclass(frozen=True)
class Teacher:
    name: str
    labels: list[str]
    model: Musicnn


@cache
def load_teacher(name: str) -> Teacher:
    path = TEACHERS_DIR / f"{name}_musicnn.pt"
    if not path.is_file():
        raise ModelError(f"{path}: no teacher weights there (run `make teacher`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = load_weights(Musicnn(n_tags=len(payload["labels"])), payload["weights"])
    return Teacher(name=name, labels=list(payload["labels"]), model=model)


def teacher_labels() -> list[str]:
    """The two taggers' tags, prefixed by their teacher: ["msd:rock", ..., "mtt:guitar", ...]."""
    return [f"{name}:{tag}" for name in TEACHER_NAMES for tag in load_teacher(name).labels]


@torch.inference_mode()
def tag_patches(patches: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(B, 187, 96) patches → both teachers' (B, 100) tag probabilities, (B, 400) penultimates."""
    probabilities, penultimates = [], []
    for name in TEACHER_NAMES:
        logits, penultimate = load_teacher(name).model(patches)
        probabilities.append(torch.sigmoid(logits))
        penultimates.append(penultimate)
    return torch.cat(probabilities, 1).numpy(), torch.cat(penultimates, 1).numpy()


def tag_signal(samples: np.ndarray, *, hop_s: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Teachers on 3 s patches of mono 16 kHz `samples`, `hop_s` apart (patch k starts at k·hop_s).

    Returns (n, 100) tag probabilities and (n, 400) penultimates; a short signal is zero-padded
    to one patch. ~20× real time per core: never run densely over a catalog.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.size < PATCH_SAMPLES:
        x = np.pad(x, (0, PATCH_SAMPLES - x.size))
    hop = int(round(hop_s * TEACHER_FEATURES.sample_rate))
    starts = range(0, x.size - PATCH_SAMPLES + 1, hop)
    clips = torch.from_numpy(np.stack([x[s : s + PATCH_SAMPLES] for s in starts]))
    patches = teacher_input(clips)[:, :PATCH_FRAMES]
    return tag_patches(patches)
