"""A genre head on the shipped student's frozen embedding: trained, saved, used by classify."""

import numpy as np
import pytest
from conftest import clicks, noise, tone

from mirsearch.checkpoints import load_checkpoint, save_checkpoint
from mirsearch.datasets import LabelledClip
from mirsearch.embeddings import Embedder
from mirsearch.heads import fit_head, predict, train_head
from mirsearch.model_card import default_checkpoint_path, read_card
from mirsearch.student import Student


def test_fit_head_separates_separable_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    x = np.concatenate([c + 0.1 * rng.normal(size=(20, 16)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    head = fit_head(x, y, 3)
    assert (predict(head, x) == y).mean() == 1.0


def test_fit_head_reads_raw_inputs_of_any_scale():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 30)
    x = np.stack(
        [500 + 1000 * (y + 0.2 * rng.normal(size=60)), rng.normal(size=60), np.full(60, 7.0)], 1
    ).astype(np.float32)
    head = fit_head(x, y, 2)
    assert (predict(head, x) == y).mean() == 1.0  # the standardisation is folded into the layer
    assert head.weight[:, 2].abs().max() < 1.0  # a constant input is not blown up by its spread


def test_a_head_on_the_shipped_embedding_names_a_users_genres(tmp_path):
    if read_card().arch != "student":
        pytest.skip("the shipped checkpoint is not a student network")
    rng = np.random.default_rng(1)
    makers = {
        "drone": lambda i: tone(float(rng.uniform(150, 300)), 8.0),
        "hiss": lambda i: noise(8.0, seed=i),
        "beat": lambda i: clicks(float(rng.uniform(90, 150)), 8.0, seed=i),
    }
    clips, signals = [], []
    for label, make in makers.items():
        for i in range(6):
            clips.append(LabelledClip(tmp_path / f"{label}{i}.wav", label, f"{label}{i}"))
            signals.append(make(i))
    path, accuracy = train_head(clips, signals, out=tmp_path / "head.pt")
    assert accuracy == 1.0
    embedder = Embedder(path)
    shipped = Embedder()
    assert embedder.labels == ["beat", "drone", "hiss"]
    x = tone(220.0, 8.0)
    mine, theirs = embedder.analyse(x), shipped.analyse(x)
    assert embedder.labels[int(mine.probabilities.argmax())] == "drone"
    np.testing.assert_array_equal(mine.vectors, theirs.vectors)  # matching is untouched
    np.testing.assert_array_equal(mine.tag_probabilities, theirs.tag_probabilities)
    assert embedder.card.matching_hash == shipped.card.matching_hash
    saved = load_checkpoint(path)
    assert default_checkpoint_path().is_file() and saved.card.arch_args["genre_rhythm"]
    assert saved.model.genre_head.in_features == embedder.dim + mine.rhythm.size


def test_a_head_saved_before_the_rhythm_profile_still_classifies(tmp_path):
    shipped = load_checkpoint()
    if shipped.card.arch != "student":
        pytest.skip("the shipped checkpoint is not a student network")
    args = shipped.card.arch_args | {"n_genres": 2}
    old = Student(**args)
    old.load_state_dict(shipped.model.state_dict(), strict=False)
    path = save_checkpoint(
        tmp_path / "old.pt",
        model=old,
        arch="student",
        arch_args=args,
        labels=shipped.card.labels,
        window_s=shipped.card.window_s,
        metadata=shipped.card.metadata | {"genre_labels": ["a", "b"]},
    )
    analysis = Embedder(path).analyse(noise(5.0))
    assert analysis.probabilities.shape == (2,) and analysis.probabilities.sum() == pytest.approx(1)
