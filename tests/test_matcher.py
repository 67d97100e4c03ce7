"""The numpy matcher against the network it stands for: the same window vectors, starts and
print as Embedder.matching, for the shipped student and a plain CNN, alone and in pieces."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from conftest import SR, noise

from mirsearch import matcher
from mirsearch.api import Engine
from mirsearch.checkpoints import build, save_checkpoint
from mirsearch.config import EmbeddingConfig, FeatureConfig
from mirsearch.demo import demo_pieces, render
from mirsearch.embeddings import Embedder
from mirsearch.errors import ModelError
from mirsearch.matcher import Matcher

SCALES = (2 ** (-1 / 12), 1.0, 2 ** (1 / 12))  # the pitch hypotheses `match` reads


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return render(demo_pieces(1, seed=5)[0], sample_rate=SR)[: 25 * SR]


def assert_same_reading(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.vectors.shape == b.vectors.shape and a.vectors.dtype == np.float32
        assert (a.vectors * b.vectors).sum(axis=1).min() > 0.99999
        np.testing.assert_allclose(a.offsets_s, b.offsets_s, atol=1e-6)
        # one mel path, NumPy's FFT against torch's: dB within a hundredth of the 3 dB steps
        # the catalog stores prints in
        np.testing.assert_allclose(a.fingerprint, b.fingerprint, atol=0.03)


def network(path=None) -> Embedder:
    """The network the matcher stands for, in float32: where the CPU computes bfloat16 natively
    an Embedder runs in it by default, within cosine 0.9999 of float32 (test_embeddings.py)."""
    return Embedder(path, config=EmbeddingConfig(bfloat16=False))


def plain_cnn(path, *, arch: str = "cnn"):
    """A `mirsearch train`-like checkpoint of `arch` with random weights and batch-norm
    statistics, so that folding the norms into the layers is tested on values that matter."""
    torch.manual_seed(3)
    args = {"n_classes": 3, "feature_config": asdict(FeatureConfig())}
    model = build(arch, **args).eval()
    for name, value in model.state_dict().items():
        if name.endswith("running_mean"):
            value.normal_(0.0, 0.3)
        elif name.endswith("running_var"):
            value.uniform_(0.5, 2.0)
    return save_checkpoint(
        path,
        model=model,
        arch=arch,
        arch_args=args,
        labels=["a", "b", "c"],
        window_s=3.0,
    )


def test_the_shipped_matching_branch_reads_as_the_network(music):
    ours = Matcher().matching(music, hop_s=0.5, frequency_scales=SCALES)
    theirs = network().matching(music, hop_s=0.5, frequency_scales=SCALES)
    assert_same_reading(ours, theirs)
    assert len(ours[1].vectors) == (25 - 3) * 2 + 1  # a window every 0.5 s


def test_a_plain_cnn_checkpoint_reads_as_its_network(music, tmp_path):
    path = plain_cnn(tmp_path / "cnn.pt")
    ours = Matcher(path).matching(music, hop_s=1.5, frequency_scales=(1.0,))
    theirs = network(path).matching(music, hop_s=1.5, frequency_scales=(1.0,))
    assert_same_reading(ours, theirs)


@pytest.mark.parametrize(("seconds", "n_windows"), [(0.7, 1), (3.0, 1), (3.3, 2)])
def test_a_clip_of_about_a_window_reads_as_the_network(seconds, n_windows):
    """Shorter than a window: zero-padded to one."""
    clip = noise(seconds, seed=2)
    ours = Matcher().matching(clip, hop_s=0.5, frequency_scales=(1.0,))
    theirs = network().matching(clip, hop_s=0.5, frequency_scales=(1.0,))
    assert_same_reading(ours, theirs)
    assert len(ours[0].vectors) == n_windows


def test_a_long_upload_read_in_pieces_gives_the_vectors_of_one_pass(music, monkeypatch):
    """Pieces of 8 map columns (2 s), the last one short: the margins must cover everything the
    trunk reaches across a cut."""
    reader = Matcher()
    whole = reader.matching(music, hop_s=0.5, frequency_scales=SCALES[:2])
    monkeypatch.setattr(matcher, "PIECE_COLUMNS", 8)
    assert_same_reading(reader.matching(music, hop_s=0.5, frequency_scales=SCALES[:2]), whole)


def test_pieces_keep_every_column_of_a_length_no_stride_divides(monkeypatch):
    """A signal of 1,601 frames in pieces of 8 coarse columns (128 frames): the last piece's
    65 frames make 5 columns at stride 16 and 17 at stride 4, as in one pass (a map column
    covers a piece's last frames too)."""
    monkeypatch.setattr(matcher, "PIECE_COLUMNS", 8)
    x = np.arange(1601.0)
    pieces = matcher.in_pieces(lambda v: (v[::16], v[::4]), x, (16, 4), concatenate=np.concatenate)
    assert [p.tolist() for p in pieces] == [x[::16].tolist(), x[::4].tolist()]


def test_a_window_or_hop_under_a_map_column_still_takes_one():
    assert matcher.window_columns(0.1, 64.0) == 1 and matcher.window_step(0.1, 0.25) == 1
    assert matcher.window_columns(3.0, 64.0) == 12 and matcher.window_step(0.5, 0.25) == 2


def test_a_network_numpy_does_not_run_is_read_by_the_network(tmp_path, settings):
    path = plain_cnn(tmp_path / "crnn.pt", arch="crnn")
    with pytest.raises(ModelError, match="'crnn' network's matching branch runs with torch"):
        Matcher(path)
    assert isinstance(Engine(replace(settings, model_path=path)).reader, Embedder)
    assert isinstance(Engine(settings).reader, Matcher)


def test_windows_other_than_the_networks_are_refused():
    with pytest.raises(ModelError, match="trained on 3.0 s windows"):
        Matcher(config=EmbeddingConfig(window_s=2.0))
