"""Your own genres on the shipped network: a small head trained on its frozen embedding.

The usual way to adapt a tagger to a catalog's own labels: the shipped student's "sounds alike"
embedding of each clip (the normalised mean of its windows, as `classify` computes it) is the
input of a softmax layer trained with AdamW, weight decay and dropout; nothing else of the
network moves. The result is the shipped checkpoint plus that head (`Student.genre_head`) and
its labels, so `MIRSEARCH_MODEL=...` makes `classify` and indexing speak those genres while the
vectors, tags and near-duplicate matching stay those of the shipped model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mirsearch.checkpoints import save_checkpoint
from mirsearch.datasets import LabelledClip
from mirsearch.embeddings import Embedder
from mirsearch.errors import MirsearchError
from mirsearch.nn import Student

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadConfig:
    epochs: int = 300  # full-batch steps
    lr: float = 1e-2  # AdamW learning rate
    weight_decay: float = 1e-2  # decoupled
    dropout: float = 0.2  # on the embedding, while training
    seed: int = 0


def embed_clips(embedder: Embedder, signals: list[np.ndarray]) -> np.ndarray:
    """(n, D) float32: the frozen "sounds alike" embedding of each clip."""
    if not embedder.is_student:
        raise MirsearchError("a head is trained on the shipped student network's embedding")
    return np.stack(
        [embedder.analyse(x).track_vector for x in tqdm(signals, desc="embedding", disable=None)]
    )


def fit_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, config: HeadConfig = HeadConfig()
) -> torch.nn.Linear:
    """A softmax layer (D → n_classes) fitted to embeddings x (n, D) and class indexes y (n,)."""
    torch.manual_seed(config.seed)
    head = torch.nn.Linear(x.shape[1], n_classes)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    inputs, targets = torch.from_numpy(x).float(), torch.from_numpy(np.asarray(y)).long()
    for _ in range(config.epochs):
        loss = F.cross_entropy(head(F.dropout(inputs, config.dropout)), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return head.eval()


def predict(head: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return head(torch.from_numpy(x).float()).argmax(-1).numpy()


def train_head(
    clips: list[LabelledClip],
    signals: list[np.ndarray],
    *,
    out: Path,
    base: Path | None = None,
    config: HeadConfig = HeadConfig(),
) -> tuple[Path, float]:
    """Fit a genre head on `clips` and save the base student with it; (path, training accuracy)."""
    labels = sorted({c.label for c in clips})
    if len(labels) < 2:
        raise MirsearchError("a genre head needs at least two classes")
    embedder = Embedder(base)
    x = embed_clips(embedder, signals)
    y = np.array([labels.index(c.label) for c in clips])
    head = fit_head(x, y, len(labels), config)
    checkpoint = embedder.checkpoint
    student: Student = checkpoint.model
    args = checkpoint.arch_args | {"n_genres": len(labels)}
    with_head = Student(**args)
    state = student.state_dict()
    state |= {f"genre_head.{k}": v for k, v in head.state_dict().items()}
    with_head.load_state_dict(state)
    save_checkpoint(
        out,
        model=with_head,
        arch="student",
        arch_args=args,
        labels=checkpoint.labels,
        window_s=checkpoint.window_s,
        metadata=checkpoint.metadata
        | {"genre_labels": labels, "genre_head": {"base_sha256": checkpoint.sha256}},
    )
    return Path(out), float((predict(head, x) == y).mean())
