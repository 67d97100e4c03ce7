"""Distillation: the student learns the teachers' outputs and keeps its matcher."""

import itertools
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import noise, tone

from mirsearch import distillation
from mirsearch.checkpoints import build, load_checkpoint, save_checkpoint
from mirsearch.config import FeatureConfig
from mirsearch.distillation import DistillConfig, Distiller, distill, student_from
from mirsearch.errors import MirsearchError, ModelError
from mirsearch.features import log_mel
from mirsearch.student import Student
from mirsearch.teaching import Taught

FEATURES = FeatureConfig()


def _taught(seed: int) -> Taught:
    """A file whose 'teacher' says tag 0 on tones and tag 1 on noise, patch by patch."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 2, 8)
    pieces = [tone(float(rng.uniform(300, 900)), 3.0) if k == 0 else noise(3.0) for k in kinds]
    mel = log_mel(torch.from_numpy(np.concatenate(pieces)), FEATURES).numpy().astype(np.float16)
    tags = np.zeros((8, 4), np.float32)
    tags[np.arange(8), kinds] = 0.9
    penultimate = np.zeros((8, 8), np.float32)
    penultimate[np.arange(8), kinds] = 1.0
    return Taught(f"file{seed}", mel, tags, penultimate, 3.0)


def small_student() -> Student:
    # the student's initial weights seeded: unseeded, 1 run in 5 had learnt too little in 30 steps
    torch.manual_seed(0)
    return Student(
        n_tags=4,
        n_teacher=8,
        embedding_dim=16,
        channels=(16, 16),
        folded=16,
        matcher_args={"n_classes": 2, "channels": (8, 16, 16, 32), "embedding_dim": 32},
        feature_config=asdict(FEATURES),
    )


def test_the_student_learns_the_teachers_tags_and_keeps_its_matcher():
    student = small_student()
    matcher_before = {k: v.clone() for k, v in student.matcher.state_dict().items()}
    config = DistillConfig(epochs=1, steps_per_epoch=60, batch_size=16, lr=1e-2, threads=1)
    distiller = Distiller(student, [_taught(s) for s in range(6)], config)
    before = distiller.validate()["val_tags"]
    for _ in range(config.steps_per_epoch):
        distiller.step()
    after = distiller.validate()["val_tags"]
    assert after < before - 0.1, (before, after)
    for key, value in student.matcher.state_dict().items():
        assert torch.equal(value, matcher_before[key]), key


def test_a_students_matching_branch_is_reused_with_its_identity(tmp_path, monkeypatch):
    """`train-default --matcher mirsearch/assets/student.pt`: the tags taught again on the shipped
    model's matching branch, which stays bit for bit and keeps the identity its duplicate
    threshold was calibrated under (a new one would fall back to the uncalibrated default)."""
    torch.manual_seed(0)
    matcher_args = {"n_classes": 2, "channels": (8, 16, 16, 32), "embedding_dim": 32}
    old = Student(n_tags=4, matcher_args=matcher_args, feature_config=asdict(FEATURES))
    identity = "f" * 64
    path = save_checkpoint(
        tmp_path / "shipped.pt",
        model=old,
        arch="student",
        arch_args=old.arch_args,
        labels=list("abcd"),
        window_s=3.0,
        metadata={"matcher_sha256": identity},
    )

    def taught(path, cache_dir, **_):  # the teachers' 100 tags and 400-d penultimate, made up
        base = _taught(int(path.name))
        tags = np.zeros((8, 4), np.float32)
        tags[:, : base.tags.shape[1]] = base.tags
        return Taught(base.path, base.mel_db, tags, np.zeros((8, 400), np.float32), 3.0)

    monkeypatch.setattr(distillation, "teach", taught)
    monkeypatch.setattr(distillation, "teacher_labels", lambda: list("abcd"))
    config = DistillConfig(epochs=1, steps_per_epoch=2, batch_size=4, threads=1)
    files = [(Path(str(seed)), 3.0, None) for seed in range(4)]
    distill(
        files, load_checkpoint(path), out=tmp_path / "new.pt", cache_dir=tmp_path, config=config
    )

    new = load_checkpoint(tmp_path / "new.pt")
    assert new.card.arch == "student" and new.card.matching_hash == identity
    assert new.card.sha256 != load_checkpoint(path).card.sha256  # the tagging branch is new
    for key, value in old.matcher.state_dict().items():
        assert torch.equal(new.model.matcher.state_dict()[key], value), key


def test_only_a_cnn_or_a_student_gives_a_matching_branch(tmp_path):
    args = {"n_classes": 2, "embedding_dim": 24, "feature_config": asdict(FEATURES)}
    path = save_checkpoint(
        tmp_path / "crnn.pt",
        model=build("crnn", **args),
        arch="crnn",
        arch_args=args,
        labels=["a", "b"],
        window_s=3.0,
    )
    with pytest.raises(ModelError, match="'cnn' or 'student'"):
        student_from(load_checkpoint(path), n_tags=4)


def test_distillation_hands_back_the_epoch_of_least_validation_loss(monkeypatch):
    """Epochs whose validation losses are 3, 1, 2 and 2: the student it hands back is the
    second epoch's (the last one's had been kept, no test noticing)."""
    student = small_student()
    config = DistillConfig(epochs=4, steps_per_epoch=1, batch_size=4, threads=1)
    distiller = Distiller(student, [_taught(s) for s in range(6)], config)
    weight = student.tag_head[1].weight
    epochs, losses = itertools.count(1), iter([3.0, 1.0, 2.0, 2.0])

    def step():
        with torch.no_grad():
            weight.fill_(next(epochs))
        return {"loss": 0.0}

    monkeypatch.setattr(distiller, "step", step)
    monkeypatch.setattr(distiller, "validate", lambda: {"val_loss": next(losses)})
    assert [row["val_loss"] for row in distiller.fit()] == [3.0, 1.0, 2.0, 2.0]
    assert torch.all(weight == 2.0)


def test_changed_views_stay_above_the_log_mel_floor():
    """EQ and masks move a view's log-mel; nothing goes under -top_db, the floor every real
    log-mel has (silence had been taught at -89 dB, a level no file gives)."""
    distiller = Distiller(small_student(), [_taught(s) for s in range(3)], DistillConfig(threads=1))
    silence = torch.full((16, FEATURES.n_mels, 200), -FEATURES.top_db)
    assert distiller._augment(silence.clone()).min() >= -FEATURES.top_db


def test_distillation_needs_two_files_the_teachers_can_read(tmp_path, monkeypatch):
    def taught(path, cache_dir, **_):
        if path.name != "0":
            raise MirsearchError(f"{path}: not audio")
        return _taught(0)

    monkeypatch.setattr(distillation, "teach", taught)
    files = [(Path(str(seed)), 3.0, None) for seed in range(3)]
    with pytest.raises(MirsearchError, match="at least two readable training files"):
        distill(files, load_checkpoint(), out=tmp_path / "new.pt", cache_dir=tmp_path)
