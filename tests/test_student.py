"""The Student: matching with its matcher, tagging with its own branch; its rhythm profile."""

from __future__ import annotations

from dataclasses import asdict

import torch

from mirsearch.checkpoints import build, load_checkpoint, save_checkpoint
from mirsearch.config import FeatureConfig
from mirsearch.student import RHYTHM_LAGS, rhythm_profile

FEATURES = asdict(FeatureConfig())


def test_student_matches_with_its_matcher_and_tags_with_its_own_branch(tmp_path):
    student = build("student", n_tags=5, matcher_args={"n_classes": 3}, feature_config=FEATURES)
    student.eval()
    mel = student.front_end(torch.randn(20 * 16_000) * 0.1)
    with torch.inference_mode():
        vectors, offsets = student.embed_windows(mel, window_s=3.0, hop_s=1.5)
        alone, _ = student.matcher.embed_windows(mel, window_s=3.0, hop_s=1.5)
        z, tag_offsets = student.tag_windows(mel, window_s=3.0, hop_s=1.5)
        tags = student.tag_head(z)
        _, _, together, _ = student.both_windows(mel, window_s=3.0, hop_s=1.5)
        folded = student.tag_fold[0].out_channels
        level = torch.ones(1, folded, 4)
        peaked = torch.tensor([0.0, 0.0, 0.0, 4.0]).expand(1, folded, 4)
        apart = student.tag_embedding(level) - student.tag_embedding(peaked)
    assert torch.equal(vectors, alone) and torch.equal(offsets, tag_offsets)
    assert torch.allclose(together, z, atol=1e-5)  # the stem computed once reads as alone
    assert apart.abs().max() > 0.1  # a window's loudest column counts, not its mean alone
    assert z.shape == (12, 128) and tags.shape == (12, 5) and student.genre_head is None
    path = save_checkpoint(
        tmp_path / "s.pt",
        model=student,
        arch="student",
        arch_args=student.arch_args,
        labels=[f"msd:t{i}" for i in range(5)],
        window_s=3.0,
    )
    loaded = load_checkpoint(path)
    with torch.inference_mode():
        again, _ = loaded.model.tag_windows(mel, window_s=3.0, hop_s=1.5)
    assert torch.equal(again, z)


def test_the_rhythm_profile_peaks_at_the_period_of_a_pattern():
    stem = torch.zeros(3, 400)
    stem[:, ::10] = 1.0  # a hit every 10 columns
    stem[1, 5::10] = 0.5  # an off-beat in one channel
    profile = rhythm_profile(stem).reshape(3, RHYTHM_LAGS)
    lags = torch.arange(1, RHYTHM_LAGS + 1)
    assert lags[profile[0].argmax()] == 10 and lags[profile[2].argmax()] == 10
    assert profile[0, 19] > 0.9 and profile[0, 4] < 0 < profile[1, 4]
    assert profile.abs().max() <= 1.0  # each lag over the lag-0 energy: the level is no part
    assert torch.allclose(rhythm_profile(10.0 * stem), rhythm_profile(stem), atol=1e-5)
    short = rhythm_profile(torch.rand(2, 20))  # lags past the end are zero, not wrapped
    assert short.shape == (2 * RHYTHM_LAGS,) and short.reshape(2, -1)[:, 19:].abs().max() < 1e-5
