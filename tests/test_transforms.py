"""The changes the evaluation and the tests put uploads through do what their names say: duration
ratios, the pitch of a sine, levels, signal-to-noise ratios, filters, codecs, reverb, mixing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, noise, peak_hz, tone

from mirsearch.transforms import TRANSFORMS

RNG_SEED = 0


def apply(name: str, x: np.ndarray, **options) -> np.ndarray:
    y, sr = TRANSFORMS[name](x, SR, rng=np.random.default_rng(RNG_SEED), **options)
    assert sr == SR and y.dtype == np.float32
    return y


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def middle(x: np.ndarray) -> np.ndarray:
    """The signal without its first and last 0.25 s (filter and codec edges)."""
    return x[SR // 4 : -SR // 4]


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - {"none"}))
def test_every_transform_changes_its_input(name):
    x = tone(440.0, 4.0) + 0.5 * tone(3000.0, 4.0) + noise(4.0, amplitude=0.02)
    options = {"background": noise(6.0, seed=1)} if name.startswith("mix") else {}
    y = apply(name, x, **options)
    n = min(x.size, y.size)
    assert x.size != y.size or np.max(np.abs(y[:n] - x[:n])) > 1e-3, name


def test_none_is_the_identity():
    x = tone(440.0, 2.0)
    np.testing.assert_array_equal(apply("none", x), x)


@pytest.mark.parametrize("factor", [0.95, 0.98, 1.02, 1.05])
def test_speed_shortens_or_lengthens_and_moves_the_pitch_with_it(factor):
    """Played `factor` times as fast: 1/factor as long, every frequency times factor."""
    x = tone(440.0, 4.0)
    y = apply(f"speed_{(factor - 1) * 100:+.0f}%", x)
    assert y.size / x.size == pytest.approx(1 / factor, abs=2e-3)
    assert peak_hz(middle(y)) == pytest.approx(440.0 * factor, rel=2e-3)


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_tempo_changes_the_duration_and_keeps_the_pitch(factor):
    x = tone(440.0, 4.0)
    y = apply(f"tempo_{(factor - 1) * 100:+.0f}%", x)
    assert y.size / x.size == pytest.approx(1 / factor, abs=2e-3)
    assert peak_hz(middle(y)) == pytest.approx(440.0, rel=3e-3)


@pytest.mark.parametrize("semitones", [-1, 1])
def test_pitch_moves_a_sine_by_a_semitone_and_keeps_the_duration(semitones):
    x = tone(440.0, 4.0)
    y = apply(f"pitch_{semitones:+d}st", x)
    assert y.size / x.size == pytest.approx(1.0, abs=3e-3)
    assert peak_hz(middle(y)) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=3e-3)


@pytest.mark.parametrize(("name", "snr_db"), [("noise_snr10", 10.0), ("noise_snr20", 20.0)])
def test_noise_is_added_at_its_signal_to_noise_ratio(name, snr_db):
    x = tone(440.0, 4.0) + 0.3 * tone(1234.0, 4.0)
    y = apply(name, x)
    assert y.size == x.size
    assert db(x) - db(y - x) == pytest.approx(snr_db, abs=0.2)


@pytest.mark.parametrize(("name", "gain_db"), [("gain_+6db", 6.0), ("gain_-10db", -10.0)])
def test_gain_changes_the_level(name, gain_db):
    x = tone(440.0, 2.0, amplitude=0.2)
    assert db(apply(name, x)) - db(x) == pytest.approx(gain_db, abs=0.01)


@pytest.mark.parametrize(
    ("name", "kept_hz", "cut_hz", "cut_db"),
    [("lowpass_4k", 1000.0, 7000.0, 30.0), ("highpass_300", 2000.0, 80.0, 30.0)],
)
def test_filters_keep_one_band_and_cut_the_other(name, kept_hz, cut_hz, cut_db):
    kept, cut = tone(kept_hz, 3.0), tone(cut_hz, 3.0)
    assert db(middle(apply(name, kept))) - db(middle(kept)) == pytest.approx(0.0, abs=1.0)
    assert db(middle(apply(name, cut))) - db(middle(cut)) < -cut_db


def test_telephone_band_removes_everything_above_4_khz():
    low, high = tone(1000.0, 3.0), tone(6000.0, 3.0)
    assert db(middle(apply("mono_8k", low))) - db(middle(low)) == pytest.approx(0.0, abs=0.5)
    assert db(middle(apply("mono_8k", high))) - db(middle(high)) < -40


@pytest.mark.parametrize("name", ["mp3_64k", "ogg_low", "aac_96k"])
def test_codecs_keep_the_music_and_its_length(name):
    """A lossy round trip: close to the input (level, pitch, length), but not the same samples."""
    x = tone(440.0, 4.0) + 0.5 * tone(660.0, 4.0)
    y = apply(name, x)
    assert abs(y.size - x.size) <= 0.1 * SR  # encoder priming and padding (AAC: 1,536 samples)
    assert db(middle(y)) == pytest.approx(db(middle(x)), abs=1.0)
    assert peak_hz(middle(y)) == pytest.approx(440.0, rel=3e-3)
    assert not np.array_equal(y[: x.size], x[: y.size])


def test_reverb_keeps_a_click_ringing_after_it():
    x = np.zeros(2 * SR, dtype=np.float32)
    x[SR // 2 : SR // 2 + 100] = 0.8  # a click at 0.5 s, then silence
    y = apply("reverb", x)
    assert y.size == x.size
    tail = slice(SR // 2 + SR // 10, SR)  # 0.1 to 0.5 s after the click
    assert db(x[tail]) < -150 and db(y[tail]) > db(y) - 25


def test_mixing_puts_a_stretch_of_the_other_recording_12_db_under_the_clip():
    x = tone(440.0, 4.0)
    background = noise(10.0, seed=3)
    under = apply("mix_-12db", x, background=background) - x
    assert db(x) - db(under) == pytest.approx(12.0, abs=0.05)
    n = background.size + under.size
    lags = np.fft.irfft(np.fft.rfft(background, n) * np.conj(np.fft.rfft(under, n)), n)
    start = int(np.argmax(lags[: background.size - under.size + 1]))
    stretch = background[start : start + under.size]
    assert np.corrcoef(under, stretch)[0, 1] > 0.999
