"""The musicnn port: parity with the original TensorFlow graph, and our mel against librosa's.

Reference outputs come from tests/fixtures/musicnn_reference.npz, made once by
scripts/musicnn_reference.py in a throwaway TensorFlow venv on four real 3 s clips.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mirsearch.features import mel_power
from mirsearch.teacher import (
    PATCH_FRAMES,
    TEACHER_FEATURES,
    TEACHER_NAMES,
    load_teacher,
    tag_signal,
    teacher_input,
    teacher_labels,
)

FIXTURE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def test_our_mel_is_librosas_mel(reference):
    ours = mel_power(torch.from_numpy(reference["waveforms"]), TEACHER_FEATURES)
    ours = ours.transpose(-1, -2)[:, :PATCH_FRAMES].numpy()
    theirs = reference["mel_power"]
    scale = theirs.max(axis=(1, 2), keepdims=True)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours / scale, theirs / scale, atol=1e-5)
    compressed = teacher_input(torch.from_numpy(reference["waveforms"]))[:, :PATCH_FRAMES]
    np.testing.assert_allclose(compressed.numpy(), np.log10(1e4 * theirs + 1), atol=1e-3)


@pytest.mark.parametrize("name", TEACHER_NAMES)
def test_port_reproduces_the_tensorflow_graph(reference, name):
    patches = torch.from_numpy(np.log10(1e4 * reference["mel_power"].astype(np.float32) + 1))
    teacher = load_teacher(name)
    assert teacher.labels == list(reference[f"{name}_labels"])
    with torch.inference_mode():
        logits, penultimate = teacher.model(patches)
    np.testing.assert_allclose(
        torch.sigmoid(logits).numpy(), reference[f"{name}_tags_f32"], atol=1e-3
    )
    np.testing.assert_allclose(
        penultimate.numpy(), reference[f"{name}_penultimate_f32"], atol=1e-3, rtol=1e-3
    )


def test_port_also_matches_on_musicnns_own_float16_input(reference):
    """Row 1 (chipdisko) is the one clip musicnn's float16 input does not overflow on."""
    row = 1
    assert np.isfinite(reference["patches"][row]).all()
    patch = torch.from_numpy(reference["patches"][row : row + 1].astype(np.float32))
    with torch.inference_mode():
        logits, _ = load_teacher("msd").model(patch)
    np.testing.assert_allclose(
        torch.sigmoid(logits).numpy()[0], reference["msd_tags"][row], atol=1e-3
    )


def test_tag_signal_patches_the_signal_and_knows_music(reference):
    """Whole-signal tagging: one patch per 3 s; the chiptune clip is electronic to both."""
    chip = reference["waveforms"][1]
    tags, penultimate = tag_signal(np.tile(chip, 3), hop_s=3.0)
    assert tags.shape == (3, 100) and penultimate.shape == (3, 400)
    labels = [f"{n}:{t}" for n in TEACHER_NAMES for t in load_teacher(n).labels]
    best = {labels[i] for i in np.argsort(-tags[0])[:6]}
    assert {"msd:electronic", "mtt:techno"} <= best
    short, _ = tag_signal(chip[:8000])
    assert short.shape == (1, 100)  # zero-padded to one patch


def test_tag_signal_answers_what_musicnn_answers_for_the_same_audio(reference):
    """From the waveform, as the student's lessons are made: each patch from its first frame,
    each teacher's sigmoid, in the order of `teacher_labels`. Only the patch's last frame
    differs (the reference's mel saw the samples after it, ours pads): by under 0.01."""
    labels = teacher_labels()
    assert labels[:2] == [f"msd:{t}" for t in reference["msd_labels"][:2]]
    assert labels[50] == f"mtt:{reference['mtt_labels'][0]}" and len(labels) == 100
    for row, waveform in enumerate(reference["waveforms"]):
        tags, _ = tag_signal(waveform)
        expected = np.concatenate([reference["msd_tags_f32"][row], reference["mtt_tags_f32"][row]])
        np.testing.assert_allclose(tags[0], expected, atol=0.01)


def test_a_short_signal_is_tagged_as_itself_followed_by_silence(reference):
    """Padded after its end, so its patch starts where it does (at 0 s)."""
    chip = reference["waveforms"][1][:16_000]
    tags, _ = tag_signal(chip)
    silence_after, _ = tag_signal(np.concatenate([chip, np.zeros(40_000, np.float32)]))
    np.testing.assert_allclose(tags[0], silence_after[0], atol=1e-4)
    silence_before, _ = tag_signal(np.concatenate([np.zeros(40_000, np.float32), chip]))
    assert np.abs(tags[0] - silence_before[0]).max() > 0.01  # where it lies counts
