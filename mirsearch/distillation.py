"""Teaching the student: the teachers' outputs cached per file, and the distillation loop.

The teachers (teacher.py, ~20× real time per core) tag 3 s patches of each training file once;
their tag probabilities and penultimate embeddings are cached beside the file's log-mel, keyed by
the file's content hash, so a retrain computes neither again. The student's tagging branch then
learns, on changed views of the same windows, to give the teachers' tag probabilities (soft
binary cross-entropy) and to predict their penultimate embeddings (mean squared error on
standardised values): soft-target distillation. The matching branch is not touched here.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mirsearch.audio import load
from mirsearch.checkpoints import Checkpoint, save_checkpoint
from mirsearch.config import AudioConfig, FeatureConfig
from mirsearch.datasets import contrastive_files
from mirsearch.errors import MirsearchError, ModelError
from mirsearch.features import log_mel
from mirsearch.student import Student
from mirsearch.teacher import TEACHER_FEATURES, tag_signal, teacher_labels

log = logging.getLogger(__name__)

PATCH_HOP_S = 3.0  # the teachers tag back-to-back 3 s patches; patch k starts at k·3 s
TRAINING_HOP_S = 3.0  # on training music, back-to-back patches ...
MAX_PATCHES = 32  # ... and at most this many of one file, spread over it (16 every 6 s: tag
# ROC-AUC 0.887 against the teachers on unseen packages; 32 every 3 s: 0.903)
MAX_MUSIC_FILES = 500  # fetched files used (all 434 today), taken in turn from each package
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Taught:
    """One file as the student trains on it: its log-mel and what the teachers said."""

    path: str
    mel_db: np.ndarray  # (n_mels, n_frames) float16, the student's own log-mel
    tags: np.ndarray  # (n_patches, 100) float32 teacher tag probabilities
    penultimate: np.ndarray  # (n_patches, 400) float32 teacher penultimate embeddings
    patch_hop_s: float


def _cache_key(path: Path, feature_config: FeatureConfig, hop_s: float, max_patches) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    settings = (CACHE_FORMAT, hop_s, feature_config) + ((max_patches,) if max_patches else ())
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:32]


def teach(
    path: Path,
    cache_dir: Path,
    *,
    feature_config: FeatureConfig,
    hop_s: float = PATCH_HOP_S,
    max_patches: int | None = None,
) -> Taught:
    """The teachers' outputs on 3 s patches `hop_s` apart (further apart if that gives more than
    `max_patches`), and the student's log-mel, for one file; from the cache if there."""
    cached = Path(cache_dir) / f"{_cache_key(path, feature_config, hop_s, max_patches)}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return Taught(str(path), z["mel_db"], z["tags"], z["penultimate"], float(z["hop_s"]))
    if feature_config.sample_rate != TEACHER_FEATURES.sample_rate:
        raise ValueError("the student and the teachers must read audio at the same rate")
    samples = load(path, config=AudioConfig(sample_rate=feature_config.sample_rate)).samples
    if max_patches:
        duration_s = samples.size / feature_config.sample_rate
        hop_s = max(hop_s, round((duration_s - 3.0) / max(1, max_patches - 1), 2))
    tags, penultimate = tag_signal(samples, hop_s=hop_s)
    mel_db = log_mel(torch.from_numpy(samples), feature_config).numpy().astype(np.float16)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, mel_db=mel_db, tags=tags, penultimate=penultimate, hop_s=hop_s)
    tmp.replace(cached)
    return Taught(str(path), mel_db, tags, penultimate, hop_s)


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


def music_files(folder: Path, *, limit: int = MAX_MUSIC_FILES, seed: int = 0) -> list[Path]:
    """Up to `limit` audio files of a training-music folder (its manifest.tsv), taken in turn
    from each package in a seeded order, so no one soundtrack dominates."""
    manifest = Path(folder) / "manifest.tsv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_package: dict[str, list[Path]] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        by_package.setdefault(row["package"], []).append(Path(folder) / row["path"])
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(files)) for _, files in sorted(by_package.items())]
    chosen: list[Path] = []
    while len(chosen) < limit and any(queues):
        chosen += [queue.pop(0) for queue in queues if queue][: limit - len(chosen)]
    return chosen


def student_from(matcher: Checkpoint, *, n_tags: int) -> Student:
    """A fresh Student whose matching branch is `matcher`'s trained CNN, weights and all."""
    card = matcher.card
    if card.arch != "cnn":
        raise ModelError(f"the matching branch must be a 'cnn' checkpoint, not {card.arch!r}")
    matcher_args = {k: v for k, v in card.arch_args.items() if k != "feature_config"}
    student = Student(
        n_tags=n_tags,
        matcher_args=matcher_args,
        feature_config=asdict(card.feature_config),
    )
    student.matcher.load_state_dict(matcher.model.state_dict())
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
            "matcher_sha256": matcher.card.sha256,
            "distill_config": asdict(config),
            "training_files": [Path(t.path).name for t in taught],
            "history": history,
        }
        | (metadata or {}),
    )
    return history


def default_training_files(shared_dir: Path, music_dir: Path):
    """The shipped recipe's music, each with its patch hop and most patches: the ../shared/audio
    packages the model may hear (tagged every 3 s, as the evaluation needs them; the other
    packages stay unseen) and the fetched training music (every 3 s, at most 32 per file)."""
    files = [(p, PATCH_HOP_S, None) for p in contrastive_files(Path(shared_dir) / "audio")]
    files += [(p, TRAINING_HOP_S, MAX_PATCHES) for p in music_files(music_dir)]
    if not files:
        raise MirsearchError(
            f"no training music: neither {shared_dir}/audio nor {music_dir}/manifest.tsv "
            "(run scripts/fetch_training_music.py)"
        )
    return files
