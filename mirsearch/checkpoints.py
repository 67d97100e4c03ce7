"""Self-describing checkpoints: a network's weights with its architecture, labels and features.

A checkpoint holds plain tensors and dicts only, so loading needs no pickled objects; it names its
architecture (a key of ARCHITECTURES, the registry `build` reads) and arguments, so
`load_checkpoint` rebuilds the network it describes, and refuses one that does not fit this code
with a ModelError saying why (what it says of itself is read first, without the weights:
model_card.py).
"""

from __future__ import annotations

import contextlib
import io
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mirsearch.errors import ModelError
from mirsearch.model_card import (
    CHECKPOINT_FORMAT,
    ModelCard,
    default_checkpoint_path,
    read_checkpoint,
)
from mirsearch.nn import CNN, CRNN, VGG, GenreNet
from mirsearch.student import Student

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


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the network in eval mode and everything it says about itself."""

    model: GenreNet | Student
    card: ModelCard


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    arch: str,
    arch_args: dict,
    labels: list[str],
    window_s: float,
    metadata: dict | None = None,
) -> Path:
    """Plain tensors and dicts only, so loading needs no pickled objects (weights_only=True)."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_args": arch_args,
        "labels": list(labels),
        "feature_config": asdict(model.feature_config),
        "window_s": float(window_s),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
        "versions": {"torch": str(torch.__version__), "python": platform.python_version()},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        tmp.replace(path)
    except BaseException as exc:  # a full disk, torch's RuntimeError, Ctrl-C while it writes
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # (interrupted, it had been left behind)
        if not isinstance(exc, OSError | RuntimeError):
            raise
        reason = getattr(exc, "strerror", None) or str(exc).rpartition("strerror: ")[2]
        raise ModelError(f"{path}: the checkpoint could not be written ({reason})") from exc
    return path


def load_checkpoint(path: Path | None = None) -> Checkpoint:
    """Rebuild the network a checkpoint describes; ModelError when it does not fit this code."""
    path = Path(path) if path is not None else default_checkpoint_path()
    data, card = read_checkpoint(path)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable mirsearch checkpoint ({exc})") from exc
    model = build(card.arch, **card.arch_args)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:  # torch's first line says only "Error(s) in loading ...:"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        what = " ".join(lines[1:]) or str(exc)
        raise ModelError(
            f"{path}: weights do not fit architecture {card.arch!r}: {what[:300]}"
        ) from exc
    model.eval()
    return Checkpoint(model=model, card=card)
