"""Training runs: clips decoded, a Trainer fitted, logged and saved; the shipped matcher's recipe.

A run logs each epoch and the validation confusion matrix to TensorBoard, and saves a
self-describing checkpoint (checkpoints.py); `train_default_model` is the recipe of the shipped
student's matching branch (distillation.py teaches its tagging branch afterwards).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mirsearch.checkpoints import save_checkpoint
from mirsearch.config import FeatureConfig, TrainConfig
from mirsearch.datasets import (
    LabelledClip,
    contrastive_files,
    decode_all,
    decode_clips,
    grouped_split,
    read_dataset,
)
from mirsearch.errors import MirsearchError
from mirsearch.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)


def train(
    clips: list[LabelledClip],
    config: TrainConfig,
    *,
    out: Path | None = None,
    unlabelled_paths: list[Path] = (),
    log_dir: Path | None = None,
    feature_config: FeatureConfig = FeatureConfig(),
    val_clips=None,
    metadata: dict | None = None,
) -> TrainResult:
    """Train on labelled clips (plus unlabelled music for the invariance term); save if `out`."""
    asked = _classes(clips)
    if val_clips is None:  # data of one group is refused before the decoding, as one class is
        grouped_split(clips, fraction=config.val_fraction, seed=config.seed)
    sr = feature_config.sample_rate
    # decoded before the split: a file that cannot be decoded had emptied the validation split
    # drawn before it (as the seed fell), and a genre none of whose files decodes had stayed
    # among the network's outputs, given a share of every answer
    decoded, signals = decode_clips(clips, sample_rate=sr)
    labels = _classes(decoded)
    if lost := sorted(set(asked) - set(labels)):
        log.warning("no file of %s can be decoded: the network learns without them", lost)
    if val_clips is None:
        clips, val_clips = grouped_split(decoded, fraction=config.val_fraction, seed=config.seed)
        held = {id(c) for c in val_clips}
        train_x = [x for c, x in zip(decoded, signals, strict=True) if id(c) not in held]
        val_x = [x for c, x in zip(decoded, signals, strict=True) if id(c) in held]
    else:
        clips, train_x = decoded, signals
        val_clips, val_x = decode_clips(val_clips, sample_rate=sr)
    index = {label: i for i, label in enumerate(labels)}
    _, unlabelled = decode_all(list(unlabelled_paths), sample_rate=sr)
    trainer = Trainer(config, labels=labels, feature_config=feature_config)
    writer = _writer(log_dir)
    result = trainer.fit(
        train_x,
        np.array([index[c.label] for c in clips]),
        val_x,
        np.array([index[c.label] for c in val_clips]),
        unlabelled=unlabelled,
        writer=writer,
    )
    if writer is not None:
        _log_confusion(writer, trainer, val_x, [index[c.label] for c in val_clips], labels)
        writer.close()
    if out is not None:
        save_checkpoint(
            out,
            model=result.model,
            arch=config.arch,
            arch_args=trainer.arch_args,
            labels=labels,
            window_s=config.window_s,
            metadata={
                "train_config": asdict(config),
                "data": {
                    "train_clips": len(clips),
                    "val_clips": len(val_clips),
                    "unlabelled_files": [p.name for p in unlabelled_paths],
                },
                "history": result.history,
                "val_loss": result.best_val_loss,
                "val_accuracy": result.val_accuracy,
            }
            | (metadata or {}),
        )
    return result


def _classes(clips: list[LabelledClip]) -> list[str]:
    """The clips' labels, sorted; MirsearchError for fewer than two."""
    labels = sorted({c.label for c in clips})
    if len(labels) < 2:
        raise MirsearchError(f"a genre network needs at least two classes; the data has {labels}")
    return labels


def _writer(log_dir: Path | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def confusion_figure(targets: np.ndarray, predicted: np.ndarray, labels: list[str]):
    """A matplotlib figure of the confusion matrix (rows: true genre, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (targets, predicted), 1)
    figure, axes = plt.subplots(figsize=(0.6 * n + 2, 0.6 * n + 1.5))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(n), labels, rotation=60, ha="right")
    axes.set_yticks(range(n), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            axes.text(j, i, matrix[i, j], ha="center", va="center", fontsize=8)
    figure.tight_layout()
    return figure


def _log_confusion(writer, trainer: Trainer, signals, targets, labels) -> None:
    if not signals:
        return
    predicted = trainer.predict(signals).argmax(1)
    writer.add_figure("confusion", confusion_figure(np.array(targets), predicted, labels))


def train_default_model(
    shared_dir: Path,
    out: Path,
    *,
    config: TrainConfig = TrainConfig(),
    log_dir: Path | None = Path("runs/default"),
) -> TrainResult:
    """The recipe of the shipped checkpoint: ../shared/genres labelled, part of ../shared/audio."""
    shared_dir = Path(shared_dir)
    genres = shared_dir / "genres" / "manifest.tsv"
    if not genres.is_file():
        raise MirsearchError(f"{genres} not found: the default model trains on ../shared/genres")
    unlabelled = contrastive_files(shared_dir / "audio")
    return train(
        read_dataset(genres),
        config,
        out=out,
        unlabelled_paths=unlabelled,
        log_dir=log_dir,
        metadata={
            "contrastive_files": [p.name for p in unlabelled],
            "recipe": "mirsearch train-default",
        },
    )
