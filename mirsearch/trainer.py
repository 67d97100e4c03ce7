"""The matching branch's training loop (Trainer): genre and invariance objectives, early stopping.

One network, one embedding. Each step trains two things at once:
- genre: cross-entropy with label smoothing (and mixup) on augmented windows of labelled clips;
- invariance: an NT-Xent contrastive term that pulls a catalog-like view of a window and a heavily
  changed view of the same music together, and pushes other windows away. It uses windows of the
  labelled clips and of unlabelled real music, and is what makes near-duplicate detection hold
  under re-encoding, noise, filtering, speed, tempo and pitch changes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mirsearch.augment import Augmenter
from mirsearch.checkpoints import build
from mirsearch.config import FeatureConfig, TrainConfig
from mirsearch.errors import MirsearchError
from mirsearch.nn import GenreNet

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: GenreNet
    labels: list[str]
    history: list[dict]
    best_val_loss: float
    val_accuracy: float


def nt_xent(a: torch.Tensor, b: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over 2N views; a[i] and b[i] are positives."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    n = a.shape[0]
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(similarity, targets)


class Trainer:
    """Holds decoded audio, the network and the optimiser; `fit` runs epochs with early stopping."""

    def __init__(self, config: TrainConfig, *, labels: list[str], feature_config: FeatureConfig):
        self.config = config
        self.labels = labels
        self.feature_config = feature_config
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        self.rng = np.random.default_rng(config.seed)
        self.arch_args = {
            "n_classes": len(labels),
            "dropout": config.dropout,
            "feature_config": asdict(feature_config),
            **config.model_args,
        }
        self.model = build(config.arch, **self.arch_args)
        self.augmenter = Augmenter(feature_config, rng=self.rng)
        self.crop_s = config.window_s + 2 * config.context_s
        total_steps = config.epochs * config.steps_per_epoch
        if config.optimizer == "adamw":
            self.optimiser = torch.optim.AdamW(
                self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
            )
        elif config.optimizer == "sgd":
            self.optimiser = torch.optim.SGD(
                self.model.parameters(),
                lr=config.lr,
                momentum=0.9,
                nesterov=True,
                weight_decay=config.weight_decay,
            )
        else:
            raise MirsearchError(f"unknown optimizer {config.optimizer!r}; use adamw or sgd")
        warmup = min(100, total_steps // 10 + 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser,
            lambda step: (
                min(1.0, (step + 1) / warmup)
                * 0.5
                * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
            ),
        )

    # -- batches ------------------------------------------------------------------------------
    def _window_pair(self, source: np.ndarray, other: np.ndarray):
        """(light, heavy) views of one random window of `source`."""
        length = source.size / self.feature_config.sample_rate
        start = float(self.rng.uniform(-self.config.context_s, max(0.0, length - self.crop_s)))
        shift = float(self.rng.uniform(-1, 1)) * self.augmenter.config.max_shift_s
        light = self.augmenter.view(source, start + shift, length_s=self.crop_s, heavy=False)
        heavy = self.augmenter.view(source, start, length_s=self.crop_s, heavy=True, other=other)
        return light, heavy

    def _embed_central(self, mel: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
        """Embeddings of the central window of context-padded crops, as inside a whole track."""
        h = self.model.feature_map(mel)
        margin = self.model.window_columns(self.config.context_s)
        width = self.model.window_columns(self.config.window_s)
        return self.model.embed_map(h[:, :, margin : margin + width], normalise=normalise)

    def step(
        self, labelled: list[np.ndarray], targets: np.ndarray, unlabelled: list[np.ndarray]
    ) -> dict:
        c = self.config
        picks = self.rng.integers(0, len(labelled), c.batch_size)
        sources = [labelled[i] for i in picks]
        if unlabelled:
            sources += [unlabelled[i] for i in self.rng.integers(0, len(unlabelled), c.batch_size)]
        others = [sources[i] for i in self.rng.permutation(len(sources))]
        pairs = [self._window_pair(s, o) for s, o in zip(sources, others, strict=True)]
        mel = self.augmenter.to_log_mel([p[0] for p in pairs] + [p[1] for p in pairs])
        light, heavy = mel[: len(pairs)], mel[len(pairs) :]
        y = torch.from_numpy(targets[picks]).long()
        self.model.train()
        z_light = self._embed_central(light, normalise=False)
        z_heavy = self._embed_central(heavy, normalise=False)
        n = c.batch_size
        genre_logits = self.model.head(F.normalize(torch.cat([z_light[:n], z_heavy[:n]]), dim=-1))
        loss_genre = F.cross_entropy(
            genre_logits, torch.cat([y, y]), label_smoothing=c.label_smoothing
        )
        if c.mixup_alpha > 0:
            loss_genre = 0.5 * loss_genre + 0.5 * self._mixup_loss(light[:n], y)
        loss_contrast = nt_xent(z_light, z_heavy, temperature=c.temperature)
        loss = loss_genre + c.contrastive_weight * loss_contrast
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimiser.step()
        self.scheduler.step()
        accuracy = (genre_logits.argmax(-1) == torch.cat([y, y])).float().mean()
        return {
            "loss": loss.item(),
            "genre": loss_genre.item(),
            "contrast": loss_contrast.item(),
            "accuracy": accuracy.item(),
        }

    def _mixup_loss(self, mel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam = float(self.rng.beta(self.config.mixup_alpha, self.config.mixup_alpha))
        order = torch.from_numpy(self.rng.permutation(mel.shape[0]))
        power = lam * 10 ** (mel / 10) + (1 - lam) * 10 ** (mel[order] / 10)
        mixed = 10 * torch.log10(power.clamp_min(1e-10))
        logits = self.model.head(self._embed_central(mixed))
        smoothing = self.config.label_smoothing
        return lam * F.cross_entropy(logits, y, label_smoothing=smoothing) + (
            1 - lam
        ) * F.cross_entropy(logits, y[order], label_smoothing=smoothing)

    # -- evaluation ---------------------------------------------------------------------------
    def predict(self, signals: list[np.ndarray]) -> np.ndarray:
        """(n_signals, n_classes) genre probabilities: mean over windows 1.5 s apart (a signal
        shorter than one window zero-padded to one, as training's views are)."""
        self.model.eval()
        window_n = round(self.config.window_s * self.feature_config.sample_rate)
        out = []
        with torch.inference_mode():
            for x in signals:
                x = np.pad(x, (0, max(0, window_n - x.size)))
                mel = self.model.front_end(torch.from_numpy(x))
                vectors, _ = self.model.embed_windows(mel, window_s=self.config.window_s, hop_s=1.5)
                out.append(torch.softmax(self.model.head(vectors), -1).mean(0).numpy())
        return np.array(out)

    def validation(self, signals: list[np.ndarray], targets: np.ndarray) -> tuple[float, float]:
        """(genre cross-entropy, accuracy) of whole-clip predictions."""
        p = self.predict(signals)
        loss = float(-np.mean(np.log(p[np.arange(len(targets)), targets] + 1e-9)))
        return loss, float((p.argmax(1) == targets).mean())

    def fixed_pairs(self, signals: list[np.ndarray], *, n: int = 64) -> torch.Tensor:
        """Seeded (light, heavy) views of validation windows, made once, for the invariance loss."""
        saved, self.rng = self.rng, np.random.default_rng(self.config.seed + 1)
        self.augmenter.rng = self.rng
        sources = [signals[i % len(signals)] for i in range(n)]
        pairs = [self._window_pair(s, sources[-1 - i]) for i, s in enumerate(sources)]
        mel = self.augmenter.to_log_mel([p[0] for p in pairs] + [p[1] for p in pairs])
        self.rng = self.augmenter.rng = saved
        return mel

    def invariance_loss(self, pairs: torch.Tensor) -> float:
        self.model.eval()
        n = pairs.shape[0] // 2
        with torch.inference_mode():
            z = self._embed_central(pairs, normalise=False)
            return float(nt_xent(z[:n], z[n:], temperature=self.config.temperature))

    def fit(
        self,
        train: list[np.ndarray],
        train_y: np.ndarray,
        val: list[np.ndarray],
        val_y: np.ndarray,
        *,
        unlabelled: list[np.ndarray] = (),
        writer=None,
    ) -> TrainResult:
        c = self.config
        best = (float("inf"), 0.0, None)
        history, stale = [], 0
        pairs = self.fixed_pairs(val + list(unlabelled)[:8]) if val else None
        for epoch in range(c.epochs):
            started = time.perf_counter()
            stats = []
            bar = tqdm(
                range(c.steps_per_epoch),
                desc=f"epoch {epoch + 1}/{c.epochs}",
                disable=None,
                leave=False,
            )
            for _ in bar:
                stats.append(self.step(train, train_y, list(unlabelled)))
                bar.set_postfix(loss=f"{stats[-1]['loss']:.3f}")
            val_genre, val_acc = self.validation(val, val_y) if val else (float("nan"), 0.0)
            val_invariance = self.invariance_loss(pairs) if val else float("nan")
            # Early stopping watches both objectives: the embedding must stay invariant too.
            val_loss = val_genre + c.contrastive_weight * val_invariance
            row = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
            row |= {
                "epoch": epoch + 1,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "val_genre_loss": val_genre,
                "val_invariance_loss": val_invariance,
                "lr": self.scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started,
            }
            history.append(row)
            log.info("epoch %d: %s", epoch + 1, row)
            if writer is not None:
                for key, value in row.items():
                    writer.add_scalar(key, value, epoch + 1)
            if val_loss < best[0] or not val:
                best, stale = (val_loss, val_acc, _state(self.model)), 0
            else:
                stale += 1
                if stale >= c.patience:
                    break
        if best[2] is None:  # every epoch's validation loss was NaN
            raise MirsearchError(
                "training diverged: the validation loss is not a number; use a lower --lr"
            )
        self.model.load_state_dict(best[2])
        self.model.eval()
        return TrainResult(self.model, self.labels, history, best[0], best[1])


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
