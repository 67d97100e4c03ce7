"""Your own genres on the shipped network: a small head trained on its frozen embedding.

The usual way to adapt a tagger to a catalog's own labels: what the frozen shipped student makes
of each clip is the input of a softmax layer trained with AdamW, weight decay and dropout;
nothing else of the network moves. That input is the "sounds alike" embedding (the normalised
mean of the clip's windows, as `classify` computes it) followed by the rhythm profile of the
network's first layers (student.rhythm_profile): the embedding pools 3 s windows and keeps little of
a groove, and on ../shared/genres, whose genres are grooves, the profile lifts grouped CV from
35 % to 46 % (README, model card). Inputs are standardised while fitting and the
standardisation folded into the layer, so the saved head reads the raw inputs.

The result is the shipped checkpoint plus that head (`Student.genre_head`) and its labels, so
`MIRSEARCH_MODEL=...` makes `classify` and indexing speak those genres while the vectors, tags
and near-duplicate matching stay those of the shipped model.
"""

from __future__ import annotations

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
from mirsearch.student import Student


@dataclass(frozen=True)
class HeadConfig:
    epochs: int = 300  # full-batch steps
    lr: float = 1e-2  # AdamW learning rate
    weight_decay: float = 1e-2  # decoupled
    dropout: float = 0.2  # on the embedding, while training
    seed: int = 0


def embed_clips(embedder: Embedder, signals: list[np.ndarray]) -> np.ndarray:
    """(n, D + R) float32: each clip's frozen "sounds alike" embedding and rhythm profile."""
    if not embedder.is_student:
        raise MirsearchError("a head is trained on the shipped student network's embedding")
    analyses = (embedder.analyse(x) for x in tqdm(signals, desc="embedding", disable=None))
    return np.stack([np.concatenate([a.track_vector, a.rhythm]) for a in analyses])


def fit_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, config: HeadConfig = HeadConfig()
) -> torch.nn.Linear:
    """A softmax layer (D → n_classes) fitted to inputs x (n, D) and class indexes y (n,)."""
    torch.manual_seed(config.seed)
    inputs, targets = torch.from_numpy(x).float(), torch.from_numpy(np.asarray(y)).long()
    mean, spread = inputs.mean(dim=0), inputs.std(dim=0, correction=0)
    scale = torch.where(spread > 1e-4, spread, 1.0)  # an input constant here stays unscaled
    inputs = (inputs - mean) / scale
    head = torch.nn.Linear(x.shape[1], n_classes)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        loss = F.cross_entropy(head(F.dropout(inputs, config.dropout)), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():  # W((x - mean) / scale) + b = (W / scale) x + (b - W (mean / scale))
        head.bias -= head.weight @ (mean / scale)
        head.weight /= scale
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
    card = embedder.checkpoint.card
    student: Student = embedder.checkpoint.model
    args = card.arch_args | {"n_genres": len(labels), "genre_rhythm": True}
    with_head = Student(**args)
    state = student.state_dict()
    state |= {f"genre_head.{k}": v for k, v in head.state_dict().items()}
    with_head.load_state_dict(state)
    save_checkpoint(
        out,
        model=with_head,
        arch="student",
        arch_args=args,
        labels=card.labels,
        window_s=card.window_s,
        metadata=card.metadata
        | {"genre_labels": labels, "genre_head": {"base_sha256": card.sha256}},
    )
    return Path(out), float((predict(head, x) == y).mean())
