"""The training loop: a tiny network learns synthetic classes; the contrastive loss; optimizers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_CONFIG, synthetic_classes

from mirsearch.config import FeatureConfig, TrainConfig
from mirsearch.errors import MirsearchError
from mirsearch.trainer import Trainer, nt_xent


def test_tiny_network_learns_tones_noise_and_clicks():
    train_x, train_y = synthetic_classes(12, seed=1)
    test_x, test_y = synthetic_classes(6, seed=2)
    trainer = Trainer(
        TINY_CONFIG, labels=["tone", "noise", "clicks"], feature_config=FeatureConfig()
    )
    result = trainer.fit(train_x, train_y, test_x[:6], test_y[:6])
    accuracy = (trainer.predict(test_x).argmax(1) == test_y).mean()
    assert accuracy > 0.95
    assert result.history and result.history[0]["epoch"] == 1


def test_nt_xent_is_low_for_matching_views_and_high_for_shuffled():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 32, generator=g)
    assert nt_xent(a, a + 0.01 * torch.randn(16, 32, generator=g), temperature=0.1) < 0.1
    assert nt_xent(a, a[torch.randperm(16, generator=g)], temperature=0.1) > 1.0


@pytest.mark.parametrize(("optimizer", "lr"), [("adamw", 1e-2), ("sgd", 0.1)])
def test_both_optimizers_bring_the_loss_down_on_a_learnable_problem(optimizer, lr):
    """24 steps on tones, noise and clicks: the whole-clip genre loss (measured without
    augmentation, so the same before and after) falls well below chance's ln 3. (After 16, SGD
    had one clip of nine still wrong on some CPUs: the same seed, other kernels.)"""
    x, y = synthetic_classes(3, seed=6)
    config = TrainConfig(
        optimizer=optimizer,
        lr=lr,
        epochs=1,
        steps_per_epoch=24,
        batch_size=8,
        mixup_alpha=0.0,
        contrastive_weight=0.0,
        model_args=TINY,
        seed=0,
    )
    trainer = Trainer(config, labels=["tone", "noise", "clicks"], feature_config=FeatureConfig())
    assert [group["weight_decay"] for group in trainer.optimiser.param_groups] == [1e-3]
    before, _ = trainer.validation(x, y)
    for _ in range(config.steps_per_epoch):
        assert np.isfinite(trainer.step(x, y, [])["loss"])
    after, accuracy = trainer.validation(x, y)
    assert before == pytest.approx(np.log(3), abs=0.05)
    assert after < 0.8 * before and accuracy >= 0.9, (before, after, accuracy)


def test_a_clip_shorter_than_the_window_is_predicted_padded_as_training_pads_it():
    """Validation after an epoch had stopped the run on a 2.5 s clip with 3 s windows."""
    trainer = Trainer(TINY_CONFIG, labels=["tone", "noise"], feature_config=FeatureConfig())
    short = np.zeros(int(0.5 * FeatureConfig().sample_rate), dtype=np.float32)
    probabilities = trainer.predict([short])
    assert probabilities.shape == (1, 2) and probabilities.sum() == pytest.approx(1.0)


def test_a_run_whose_loss_is_never_a_number_says_so(monkeypatch):
    """It had ended in torch's 'Expected state_dict to be dict-like, got NoneType'."""
    x, y = synthetic_classes(2, seed=6)
    config = TrainConfig(epochs=2, steps_per_epoch=1, batch_size=4, model_args=TINY)
    trainer = Trainer(config, labels=["tone", "noise", "clicks"], feature_config=FeatureConfig())
    monkeypatch.setattr(trainer, "validation", lambda signals, targets: (float("nan"), 0.0))
    with pytest.raises(MirsearchError, match="diverged.*lower --lr"):
        trainer.fit(x, y, x, y)


def test_the_genre_loss_and_its_mixup_are_smoothed_as_configured(monkeypatch):
    """Label smoothing on the genre loss and on both halves of the mixup loss; none on the
    contrastive loss, whose targets are exact."""
    smoothing, cross_entropy = [], torch.nn.functional.cross_entropy

    def spy(*args, **kwargs):
        smoothing.append(kwargs.get("label_smoothing", 0.0))
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    x, y = synthetic_classes(2, seed=6)
    config = TrainConfig(batch_size=4, model_args=TINY, label_smoothing=0.2, mixup_alpha=0.4)
    Trainer(config, labels=["tone", "noise", "clicks"], feature_config=FeatureConfig()).step(
        x, y, []
    )
    assert sorted(smoothing) == [0.0, 0.2, 0.2, 0.2]


def scripted(trainer: Trainer, monkeypatch, *, invariance: list[float]) -> torch.Tensor:
    """`trainer` with steps that only write their number into its first weight, a level genre
    loss (1.0) and these invariance losses epoch by epoch; that weight, to read an epoch by."""
    weight = next(trainer.model.parameters())
    steps, losses = itertools.count(1), iter(invariance)

    def step(*_):
        with torch.no_grad():
            weight.fill_(next(steps))
        return {"loss": 0.0}

    monkeypatch.setattr(trainer, "step", step)
    monkeypatch.setattr(trainer, "fixed_pairs", lambda signals: None)
    monkeypatch.setattr(trainer, "validation", lambda signals, targets: (1.0, 0.5))
    monkeypatch.setattr(trainer, "invariance_loss", lambda pairs: next(losses))
    return weight


def test_early_stopping_hands_back_the_epoch_best_on_both_objectives(monkeypatch):
    """The genre loss level, the invariance loss least at epoch 2: the run stops `patience`
    epochs after it, and the network it hands back is epoch 2's (the last epoch's had been
    kept, or the genre loss alone watched, the first epoch's)."""
    config = TrainConfig(epochs=10, steps_per_epoch=1, patience=2, model_args=TINY)
    trainer = Trainer(config, labels=["a", "b"], feature_config=FeatureConfig())
    weight = scripted(trainer, monkeypatch, invariance=[2.0, 1.0, 1.5, 3.0, 0.5, 0.5])
    clip = np.zeros(FeatureConfig().sample_rate * 4, dtype=np.float32)
    result = trainer.fit([clip], np.array([0]), [clip], np.array([0]))
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.best_val_loss == 1.0 + config.contrastive_weight * 1.0
    assert torch.all(weight == 2.0)


def test_without_a_validation_set_every_epoch_runs_and_the_last_is_kept(monkeypatch):
    config = TrainConfig(epochs=3, steps_per_epoch=1, patience=1, model_args=TINY)
    trainer = Trainer(config, labels=["a", "b"], feature_config=FeatureConfig())
    weight = scripted(trainer, monkeypatch, invariance=[])
    clip = np.zeros(FeatureConfig().sample_rate * 4, dtype=np.float32)
    result = trainer.fit([clip], np.array([0]), [], np.array([], dtype=np.int64))
    assert len(result.history) == 3 and torch.all(weight == 3.0)


def test_the_fixed_validation_pairs_leave_training_s_random_views_as_they_were():
    """The pairs are drawn from a generator of their own; after them the trainer and its
    augmenter draw from the training generator again, one stream as before."""
    x, _ = synthetic_classes(2, seed=6)
    trainer = Trainer(TINY_CONFIG, labels=["a", "b", "c"], feature_config=FeatureConfig())
    before = trainer.rng
    trainer.fixed_pairs(x, n=4)
    assert trainer.rng is before and trainer.augmenter.rng is before
