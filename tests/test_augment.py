"""Training views (augment.py): the light view is the catalog's audio untouched, and each change
of the heavy view does what it says, alone: speed moves pitch and length together, tempo keeps
the pitch, pitch keeps the length, and the level, noise, filters, mixing, reverb and masks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import SR, peak_hz, tone

from mirsearch.augment import AugmentConfig, Augmenter
from mirsearch.config import FeatureConfig

NONE = AugmentConfig(
    speed=(0.0, 1.0, 1.0),
    pitch=(0.0, 0.0, 0.0),
    tempo=(0.0, 1.0, 1.0),
    vocoder=0.0,
    gain=(0.0, 0.0, 0.0),
    noise=(0.0, 20.0, 20.0),
    low_pass=(0.0, 2500.0, 2500.0),
    high_pass=(0.0, 300.0, 300.0),
    band_limit=0.0,
    reverb=(0.0, 0.5, 0.5),
    mix=(0.0, -12.0, -12.0),
    mask=0.0,
)  # every change off: a test turns on the one it looks at


def heavy(source: np.ndarray, other: np.ndarray | None = None, *, seed: int = 0, **change):
    """A heavy 3 s view of `source` from 1 s, with only the changes named (always applied)."""
    augmenter = Augmenter(FeatureConfig(), replace(NONE, **change), rng=np.random.default_rng(seed))
    return augmenter, augmenter.view(source, 1.0, length_s=3.0, heavy=True, other=other)


def level_db(x: np.ndarray, hz: float) -> float:
    """The level of `x`'s component at `hz` (its amplitude, in dB), read by projection."""
    t = np.arange(x.size) / SR
    return float(20 * np.log10(2 * np.abs(np.mean(x * np.exp(-2j * np.pi * hz * t)))))


def test_a_light_view_is_the_catalog_s_audio_untouched_with_every_change_likely():
    """The catalog side of a pair: only cropped (zero-padded before the signal's start), even
    where the heavy view's changes are all likely."""
    source = np.random.default_rng(1).uniform(-0.5, 0.5, 5 * SR).astype(np.float32)
    augmenter = Augmenter(FeatureConfig(), rng=np.random.default_rng(2))
    for start_s in (1.0, -0.5, 3.5):
        view = augmenter.view(source, start_s, length_s=3.0, heavy=False)
        expected = np.zeros(3 * SR, np.float32)
        lo, hi = int(start_s * SR), int(start_s * SR) + 3 * SR
        expected[max(0, -lo) : 3 * SR - max(0, hi - source.size)] = source[max(0, lo) : hi]
        assert np.array_equal(view.samples, expected) and not view.mask
        assert view.frames == 3 * SR // FeatureConfig().hop_length + 1


def test_speed_moves_the_pitch_and_reads_more_of_the_music_in_the_same_time():
    _, view = heavy(tone(440.0, 10.0), speed=(1.0, 1.06, 1.06))
    assert view.samples.size == 3 * SR
    assert peak_hz(view.samples) == pytest.approx(440.0 * 1.06, abs=1.0)


@pytest.mark.parametrize("vocoder", [0.0, 1.0])
def test_tempo_keeps_the_pitch_stretching_the_frames_or_the_waveform(vocoder):
    """Without the phase vocoder the view holds 6 % more samples, its log-mel stretched back to
    3 s of frames; with it, the waveform itself is 3 s long. The tone stays at 440 Hz."""
    augmenter, view = heavy(tone(440.0, 10.0), tempo=(1.0, 1.06, 1.06), vocoder=vocoder)
    assert view.samples.size == (round(3 * SR * 1.06) if vocoder == 0.0 else 3 * SR)
    assert peak_hz(view.samples) == pytest.approx(440.0, abs=1.0)
    mel = augmenter.to_log_mel([view])
    assert mel.shape == (1, FeatureConfig().n_mels, view.frames)


def test_pitch_moves_the_frequencies_and_keeps_the_length():
    _, view = heavy(tone(440.0, 10.0), pitch=(1.0, 1.2, 1.2), vocoder=1.0)
    assert view.samples.size == 3 * SR
    assert peak_hz(view.samples) == pytest.approx(440.0 * 2 ** (1.2 / 12), abs=1.5)


def test_gain_changes_the_level_and_never_clips_past_full_scale():
    _, quieter = heavy(tone(440.0, 10.0, amplitude=0.5), gain=(1.0, -10.0, -10.0))
    assert level_db(quieter.samples, 440.0) == pytest.approx(20 * np.log10(0.5) - 10.0, abs=0.1)
    _, louder = heavy(tone(440.0, 10.0, amplitude=0.9), gain=(1.0, 6.0, 6.0))
    assert np.abs(louder.samples).max() == pytest.approx(1.0)


def test_noise_is_added_at_its_signal_to_noise_ratio():
    clean = tone(440.0, 10.0, amplitude=0.5)
    _, view = heavy(clean, noise=(1.0, 20.0, 20.0))
    added = view.samples - clean[SR : 4 * SR]
    snr = 10 * np.log10(np.mean(clean**2) / np.mean(added**2))
    assert snr == pytest.approx(20.0, abs=0.5)


@pytest.mark.parametrize(
    ("change", "kept_hz", "cut_hz", "cut_db"),
    [
        ({"low_pass": (1.0, 2500.0, 2500.0)}, 1000.0, 6000.0, 30.0),
        ({"high_pass": (1.0, 300.0, 300.0)}, 2000.0, 100.0, 37.0),
        ({"band_limit": 1.0}, 3000.0, 5000.0, 100.0),
    ],
)
def test_filters_keep_one_band_and_cut_the_other(change, kept_hz, cut_hz, cut_db):
    source = tone(kept_hz, 10.0) + tone(cut_hz, 10.0)  # each at amplitude 0.3
    _, view = heavy(source, **change)
    assert level_db(view.samples, kept_hz) == pytest.approx(20 * np.log10(0.3), abs=0.1)
    assert level_db(view.samples, cut_hz) < 20 * np.log10(0.3) - cut_db


def test_other_music_is_mixed_under_at_its_level():
    clip, other = tone(440.0, 10.0, amplitude=0.5), tone(1000.0, 10.0, amplitude=0.2)
    _, view = heavy(clip, other, mix=(1.0, -12.0, -12.0))
    assert level_db(view.samples, 440.0) == pytest.approx(20 * np.log10(0.5), abs=0.1)
    assert level_db(view.samples, 1000.0) == pytest.approx(20 * np.log10(0.5) - 12.0, abs=0.2)


def test_reverb_keeps_a_click_ringing_after_it():
    click = np.zeros(10 * SR, np.float32)
    click[2 * SR] = 1.0  # at 1 s of the view
    _, dry = heavy(click)
    _, wet = heavy(click, reverb=(1.0, 0.5, 0.5))
    after = slice(int(1.1 * SR), int(1.3 * SR))
    assert np.abs(dry.samples[after]).max() < 1e-6 and np.abs(wet.samples[after]).max() > 0.01


def test_a_masked_view_has_a_band_and_a_stretch_of_time_at_its_floor():
    noise = np.random.default_rng(3).uniform(-0.5, 0.5, 10 * SR).astype(np.float32)
    augmenter, view = heavy(noise, mask=1.0)
    assert view.mask
    (mel,) = augmenter.to_log_mel([view])
    floor = mel.min()
    assert 1 <= int((mel == floor).all(dim=1).sum()) < 8  # mel bands: one mask of 1–7
    assert 1 <= int((mel == floor).all(dim=0).sum()) < 20  # frames: one mask of 1–19
