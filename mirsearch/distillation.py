"""Teaching the student: its tagging branch learns the teachers' cached outputs (the Distiller).

The student's tagging branch learns, on changed views of the same windows the teachers tagged
(teaching.py), to give the teachers' tag probabilities (soft binary cross-entropy) and to predict
their penultimate embeddings (mean squared error on standardised values): soft-target
distillation. The matching branch is not touched here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mirsearch.checkpoints import Checkpoint, save_checkpoint
from mirsearch.errors import MirsearchError, ModelError
from mirsearch.student import Student
from mirsearch.teacher import teacher_labels
from mirsearch.teaching import Taught, teach

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 24  # the epoch with the lowest validation loss is kept
    steps_per_epoch: int = 60  # batches of random teacher patches per epoch
    batch_size: int = 64  # patches per step
    lr: float = 3e-3  # AdamW peak learning rate, cosine decay after a short warm-up
    weight_decay: float = 1e-2  # decoupled (AdamW)
    context_s: float = 0.5  # log-mel each side of a window, as a window inside a track has
    penultimate_weight: float = 0.5  # mean squared error on the standardised penultimates
    relation_weight: float = 1.0  # batch cosine-similarity matrix against the teachers'
    eq_db: float = 6.0  # training views: random smooth EQ up to ± this many dB
    noise: tuple[float, float, float] = (0.3, 10.0, 30.0)  # (probability, low, high) SNR dB
    mask: float = 0.3  # probability of one frequency and one time mask
    val_fraction: float = 0.1  # share of files held out to choose the epoch
    seed: int = 0
    threads: int = 2  # torch CPU threads


class Distiller:
    """Trains a Student's tagging branch on taught files; its matching branch stays frozen.

    The stem the tagging branch starts from is the frozen matcher's, so each patch's stem
    features are computed once, up front (on a randomly changed view of half the patches), and
    a step only runs the branch's own layers.
    """

    def __init__(self, model, taught: list[Taught], config: DistillConfig = DistillConfig()):
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        self.model, self.config = model, config
        self.rng = np.random.default_rng(config.seed)
        order = self.rng.permutation(len(taught))
        n_val = max(1, round(config.val_fraction * len(taught)))
        val = [taught[i] for i in order[:n_val]]
        train = [taught[i] for i in order[n_val:]]
        stacked = np.concatenate([t.penultimate for t in train])
        std = stacked.std(0)
        self.pen_mean = torch.from_numpy(stacked.mean(0))
        self.pen_std = torch.from_numpy(std + 0.1 * std.mean() + 1e-6)  # dead units stay small
        fps = model.feature_config.frames_per_s
        self.window_frames = round(model.matcher.window_columns(3.0) * model.TIME_STRIDE)
        self.context_frames = round(config.context_s * fps)
        model.eval()
        for p in model.matcher.parameters():
            p.requires_grad_(False)
        self.train = self._stems(train, augment=True)
        self.val = self._stems(val, augment=False)
        params = [p for n, p in model.named_parameters() if not n.startswith("matcher.")]
        self.optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        total = config.epochs * config.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimiser, max_lr=config.lr, total_steps=total, pct_start=0.05
        )

    # -- data ---------------------------------------------------------------------------------
    def _crop(self, taught: Taught, patch: int) -> np.ndarray:
        """The patch's log-mel with context, and a stem column (4 frames) more each side."""
        fps = self.model.feature_config.frames_per_s
        margin = self.context_frames + self.model.TIME_STRIDE // 4
        start = round(patch * taught.patch_hop_s * fps) - margin
        n = self.window_frames + 2 * margin
        mel = taught.mel_db
        out = np.full((mel.shape[0], n), -self.model.feature_config.top_db, np.float32)
        lo, hi = max(0, start), min(mel.shape[1], start + n)
        if hi > lo:
            out[:, lo - start : hi - start] = mel[:, lo:hi]
        return out

    @torch.inference_mode()
    def _stems(self, taught: list[Taught], *, augment: bool):
        """(stem features float16 (n, C, F, T), teacher tags (n, 100), penultimates (n, 400))."""
        items = [(t, p) for t in taught for p in range(len(t.tags))]
        stems = []
        for start in tqdm(range(0, len(items), 256), desc="stems", disable=None, leave=False):
            chunk = items[start : start + 256]
            mel = torch.from_numpy(np.stack([self._crop(t, p) for t, p in chunk]))
            if augment:
                changed = torch.from_numpy(self.rng.random(len(chunk)) < 0.5)
                mel = torch.where(changed[:, None, None], self._augment(mel.clone()), mel)
            stems.append(self.model.stem(mel).half())
        tags = torch.from_numpy(np.concatenate([t.tags for t in taught]))
        pen = torch.from_numpy(np.concatenate([t.penultimate for t in taught]))
        return torch.cat(stems), tags, (pen - self.pen_mean) / self.pen_std

    def _augment(self, mel: torch.Tensor) -> torch.Tensor:
        """Smooth random EQ, noise at a random SNR, masks: what uploads do to a catalog track."""
        c, (b, n_mels, n_frames) = self.config, mel.shape
        position = torch.linspace(-1, 1, n_mels)
        coefficients = torch.from_numpy(self.rng.uniform(-1, 1, (b, 3))).float()
        curve = coefficients[:, :1] * position + coefficients[:, 1:2] * position**2
        curve = curve + coefficients[:, 2:] * torch.cos(np.pi * position)
        mel = mel + c.eq_db / 2 * curve[:, :, None]
        noisy = torch.from_numpy(self.rng.random(b) < c.noise[0])
        snr = torch.from_numpy(self.rng.uniform(c.noise[1], c.noise[2], b)).float()
        level = 10 * torch.log10((10 ** (mel / 10)).mean(dim=(1, 2)))
        noise = (level - snr)[:, None, None] - 3 * position.abs()[None, :, None]
        mixed = 10 * torch.log10(10 ** (mel / 10) + 10 ** (noise / 10))
        mel = torch.where(noisy[:, None, None], mixed, mel)
        for i in np.flatnonzero(self.rng.random(b) < c.mask):
            f0, t0 = self.rng.integers(0, n_mels - 8), self.rng.integers(0, n_frames - 24)
            mel[i, f0 : f0 + self.rng.integers(1, 8)] = mel[i].min()
            mel[i, :, t0 : t0 + self.rng.integers(1, 24)] = mel[i].min()
        return mel.clamp_(min=-self.model.feature_config.top_db)

    # -- training -----------------------------------------------------------------------------
    def _losses(self, stem, tags, pen, shift: int = 1) -> dict[str, torch.Tensor]:
        """Losses on stem features shifted by `shift` stem columns (0–2; 1 is centred)."""
        width = (self.window_frames + 2 * self.context_frames) // 4
        h = self.model.tag_map(stem[..., shift : shift + width].float())
        margin = self.context_frames // self.model.TIME_STRIDE
        columns = self.window_frames // self.model.TIME_STRIDE
        z = self.model.tag_embedding(h[:, :, margin : margin + columns])
        logits, predicted = self.model.tag_head(z), self.model.teacher_head(z)
        zn, tn = F.normalize(z, dim=-1), F.normalize(pen, dim=-1)
        return {
            "tags": F.binary_cross_entropy_with_logits(logits, tags),
            "penultimate": F.mse_loss(predicted, pen),
            "relation": F.mse_loss(zn @ zn.T, tn @ tn.T),
        }

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        return (
            losses["tags"]
            + c.penultimate_weight * losses["penultimate"]
            + c.relation_weight * losses["relation"]
        )

    def step(self) -> dict[str, float]:
        stems, tags, pen = self.train
        picks = torch.from_numpy(self.rng.integers(0, len(tags), self.config.batch_size))
        self.model.train()
        self.model.matcher.eval()
        shift = int(self.rng.integers(0, 3))
        losses = self._losses(stems[picks], tags[picks], pen[picks], shift)
        total = self._total(losses)
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()
        self.optimiser.step()
        self.scheduler.step()
        return {"loss": total.item()} | {k: v.item() for k, v in losses.items()}

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        stems, tags, pen = self.val
        sums: dict[str, float] = {}
        for start in range(0, len(tags), 256):
            part = slice(start, start + 256)
            losses = self._losses(stems[part], tags[part], pen[part])
            losses["loss"] = self._total(losses)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(tags[part])
        return {f"val_{k}": v / len(tags) for k, v in sums.items()}

    def fit(self) -> list[dict]:
        history, best = [], (float("inf"), None)
        for epoch in range(self.config.epochs):
            started = time.perf_counter()
            stats = [self.step() for _ in range(self.config.steps_per_epoch)]
            row = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
            row |= self.validate() | {"epoch": epoch + 1}
            row["seconds"] = time.perf_counter() - started
            history.append(row)
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()})
            if row["val_loss"] < best[0]:
                best = (row["val_loss"], {k: v.clone() for k, v in self.model.state_dict().items()})
        self.model.load_state_dict(best[1])
        self.model.eval()
        return history


def student_from(matcher: Checkpoint, *, n_tags: int) -> Student:
    """A fresh Student whose matching branch is `matcher`'s trained CNN, weights and all: a
    'cnn' checkpoint, or a student's own matching branch (its tagging branch left behind), so
    the shipped model's tags can be taught again without training stage 1."""
    card = matcher.card
    if card.arch == "student":
        cnn, matcher_args = matcher.model.matcher, card.arch_args["matcher_args"]
    elif card.arch == "cnn":
        cnn = matcher.model
        matcher_args = {k: v for k, v in card.arch_args.items() if k != "feature_config"}
    else:
        raise ModelError(
            f"the matching branch must come from a 'cnn' or 'student' checkpoint, not {card.arch!r}"
        )
    student = Student(
        n_tags=n_tags,
        matcher_args=matcher_args,
        feature_config=asdict(card.feature_config),
    )
    student.matcher.load_state_dict(cnn.state_dict())
    return student


def distill(
    files: list[tuple[Path, float, int | None]],
    matcher: Checkpoint,
    *,
    out: Path,
    cache_dir: Path,
    config: DistillConfig = DistillConfig(),
    metadata: dict | None = None,
) -> list[dict]:
    """Teach `files` ((path, patch hop in seconds, most patches), cached), train a Student on
    them, save it at `out`; the training history."""
    labels = teacher_labels()
    taught = []
    for path, hop_s, max_patches in tqdm(files, desc="teachers", disable=None):
        try:
            taught.append(
                teach(
                    path,
                    cache_dir,
                    feature_config=matcher.card.feature_config,
                    hop_s=hop_s,
                    max_patches=max_patches,
                )
            )
        except MirsearchError as exc:
            log.warning("skipped: %s", exc)
    if len(taught) < 2:
        raise MirsearchError("distillation needs at least two readable training files")
    student = student_from(matcher, n_tags=len(labels))
    history = Distiller(student, taught, config).fit()
    save_checkpoint(
        out,
        model=student,
        arch="student",
        arch_args=student.arch_args,
        labels=labels,
        window_s=matcher.card.window_s,
        metadata={
            "recipe": "mirsearch train-default (distillation from musicnn MSD + MTT)",
            "matcher_sha256": matcher.card.matching_hash,  # its calibrated threshold holds
            "distill_config": asdict(config),
            "training_files": [Path(t.path).name for t in taught],
            "history": history,
        }
        | (metadata or {}),
    )
    return history
