"""Networks and checkpoints: registry, save → load → same outputs, clear errors on mismatch."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from mirsearch import matcher
from mirsearch.checkpoints import ARCHITECTURES, build, load_checkpoint, save_checkpoint
from mirsearch.config import FeatureConfig
from mirsearch.errors import ModelError

FEATURES = asdict(FeatureConfig())


@pytest.mark.parametrize("arch", sorted(set(ARCHITECTURES) - {"student"}))
def test_every_architecture_embeds_windows_and_classifies(arch):
    model = build(arch, n_classes=4, feature_config=FEATURES).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3 * 16_000) * 0.1)
        mel = model.front_end(torch.randn(20 * 16_000) * 0.1)
        vectors, offsets = model.embed_windows(mel, window_s=3.0, hop_s=1.5)
    assert logits.shape == (2, 4)
    assert vectors.shape == (12, 128) and offsets.tolist()[:3] == [0.0, 1.5, 3.0]
    assert torch.allclose(vectors.norm(dim=1), torch.ones(12), atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_long_signal_in_pieces_gives_the_maps_of_one_pass(arch, monkeypatch):
    """A 40 s log-mel in pieces of 8 columns (a short one last) against one pass: the margins
    must cover everything the trunk reaches across a cut."""
    args = (
        {"n_tags": 5, "matcher_args": {"n_classes": 3}} if arch == "student" else {"n_classes": 3}
    )
    model = build(arch, **args, feature_config=FEATURES).eval()
    mel = model.front_end(torch.randn(40 * 16_000 + 1234) * 0.1)

    def maps():
        with torch.inference_mode():
            if arch == "student":
                return model.both_windows(mel, window_s=3.0, hop_s=0.5)
            return (model.feature_map(mel.unsqueeze(0)),)

    whole = maps()
    monkeypatch.setattr(matcher, "PIECE_COLUMNS", 8)
    pieces = maps()
    for a, b in zip(whole, pieces, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = build("cnn", n_classes=3, feature_config=FEATURES).eval()
    path = save_checkpoint(
        tmp_path / "m.pt",
        model=model,
        arch="cnn",
        arch_args={"n_classes": 3, "feature_config": FEATURES},
        labels=["a", "b", "c"],
        window_s=3.0,
        metadata={"note": "test"},
    )
    loaded = load_checkpoint(path)
    x = torch.randn(2, 3 * 16_000) * 0.1
    with torch.inference_mode():
        assert torch.equal(model(x), loaded.model(x))
    assert loaded.card.labels == ["a", "b", "c"] and loaded.card.metadata == {"note": "test"}
    assert len(loaded.card.sha256) == 64


def test_weights_that_do_not_fit_the_architecture_raise_model_error(tmp_path):
    model = build("cnn", n_classes=3, feature_config=FEATURES)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model=model,
        arch="cnn",
        arch_args={"n_classes": 5, "feature_config": FEATURES},
        labels=list("abcde"),
        window_s=3.0,
    )
    with pytest.raises(ModelError, match="do not fit"):
        load_checkpoint(path)


def test_unknown_architecture_feature_config_and_junk_raise_model_error(tmp_path):
    model = build("cnn", n_classes=2, feature_config=FEATURES)
    args = {"n_classes": 2, "feature_config": FEATURES}
    bad_arch = save_checkpoint(
        tmp_path / "a.pt",
        model=model,
        arch="transformer",
        arch_args=args,
        labels=["x", "y"],
        window_s=3.0,
    )
    with pytest.raises(ModelError, match="unknown architecture"):
        load_checkpoint(bad_arch)
    payload = torch.load(bad_arch, weights_only=True)
    payload["arch"], payload["feature_config"] = "cnn", {**FEATURES, "n_chroma": 12}
    torch.save(payload, tmp_path / "f.pt")
    with pytest.raises(ModelError, match="feature config"):
        load_checkpoint(tmp_path / "f.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="no model checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_the_shipped_checkpoint_loads_without_pickled_objects():
    checkpoint = load_checkpoint()
    assert checkpoint.card.arch in ARCHITECTURES and len(checkpoint.card.labels) >= 2
    assert checkpoint.card.window_s == 3.0


@pytest.mark.parametrize("arch", sorted(set(ARCHITECTURES) - {"student"}))
def test_a_windows_logits_are_the_head_on_the_embedding_indexing_stores(arch):
    """`forward` (a network's genre logits) and the indexing path (a track's window
    embeddings, unit vectors, then the head) agree on a window of exactly 12
    feature-map columns: the head sees the normalised embedding either way."""
    model = build(arch, n_classes=4, feature_config=FEATURES).eval()
    x = torch.randn(191 * FeatureConfig().hop_length) * 0.1  # 192 mel frames: 12 columns
    with torch.inference_mode():
        logits = model(x.unsqueeze(0))[0]
        mel = model.front_end(x)
        vectors, _ = model.embed_windows(mel, window_s=3.0, hop_s=3.0)
        feature_map = model.feature_map(mel.unsqueeze(0))
        indexed = model.head(vectors[0])
        unnormalised = model.head(model.embed_map(feature_map, normalise=False)[0])
    assert feature_map.shape[-1] == model.window_columns(3.0) == 12 and len(vectors) == 1
    assert torch.allclose(indexed, logits, atol=1e-5)
    assert not torch.allclose(unnormalised, logits, atol=1e-3)  # its norm is far from 1
