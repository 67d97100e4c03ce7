"""Self-describing checkpoints: a network's weights with its architecture, labels and features.

A checkpoint holds plain tensors and dicts only, so loading needs no pickled objects; it names its
architecture (nn.ARCHITECTURES) and arguments, so `load_checkpoint` rebuilds the network it
describes, and refuses one that does not fit this code with a ModelError saying why.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from mirsearch.config import FeatureConfig
from mirsearch.errors import ModelError
from mirsearch.nn import GenreNet, Student, build

CHECKPOINT_FORMAT = 1
ASSETS = Path(__file__).resolve().parent / "assets"


def default_checkpoint_path() -> Path:
    return ASSETS / "student.pt"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the network in eval mode and everything it says about itself."""

    model: GenreNet | Student
    arch: str
    arch_args: dict
    labels: list[str]
    feature_config: FeatureConfig
    window_s: float
    sha256: str
    metadata: dict = field(default_factory=dict)


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_checkpoint(path: Path | None = None) -> Checkpoint:
    """Rebuild the network a checkpoint describes; ModelError when it does not fit this code."""
    path = Path(path) if path is not None else default_checkpoint_path()
    if not path.is_file():
        raise ModelError(f"{path}: no model checkpoint there (train one with `mirsearch train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable mirsearch checkpoint ({exc})") from exc
    missing = {
        "format",
        "arch",
        "arch_args",
        "labels",
        "feature_config",
        "window_s",
        "state_dict",
    } - set(payload if isinstance(payload, dict) else {})
    if missing:
        raise ModelError(
            f"{path}: not a mirsearch checkpoint (missing {', '.join(sorted(missing))})"
        )
    if payload["format"] != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{path}: checkpoint format {payload['format']}, this code reads {CHECKPOINT_FORMAT}"
        )
    try:
        feature_config = FeatureConfig(**payload["feature_config"])
    except TypeError as exc:
        raise ModelError(f"{path}: feature config does not match this code ({exc})") from exc
    args = dict(payload["arch_args"])
    model = build(payload["arch"], **args)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{path}: weights do not fit architecture {payload['arch']!r}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    model.eval()
    return Checkpoint(
        model=model,
        arch=payload["arch"],
        arch_args=args,
        labels=list(payload["labels"]),
        feature_config=feature_config,
        window_s=float(payload["window_s"]),
        sha256=_sha256(path),
        metadata=dict(payload.get("metadata", {})),
    )
