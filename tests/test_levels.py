"""The silence check's level and the windows in pauses (levels.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, clicks, tone

from mirsearch import levels
from mirsearch.config import AudioConfig


def test_a_sine_reads_at_its_level_and_an_offset_or_drift_at_none():
    """A sine at full scale is -3 dBFS, 40 dB down -43; a DC offset and a 0.3 Hz drift (each
    0.02 s block losing its straight line) read far under the silence level (float32 rounding
    left, -76 dBFS); a NaN sample is told."""
    t = np.arange(5 * SR) / SR
    full = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    assert levels.level_dbfs(full, sample_rate=SR) == pytest.approx(-3.01, abs=0.05)
    assert levels.level_dbfs(0.01 * full, sample_rate=SR) == pytest.approx(-43.01, abs=0.05)
    drift = (0.5 + 0.4 * np.sin(2 * np.pi * 0.3 * t)).astype(np.float32)
    assert levels.level_dbfs(drift, sample_rate=SR) < AudioConfig().silence_dbfs - 10
    assert levels.level_dbfs(drift + 0.01 * full, sample_rate=SR) == pytest.approx(-43.0, abs=0.1)
    broken = full.copy()
    broken[SR] = np.nan
    assert np.isnan(levels.level_dbfs(broken, sample_rate=SR))


def test_windows_of_a_silent_lead_in_or_an_offset_are_not_sound():
    """A window is sound unless a tenth of it lies in a pause (PAUSE_S or more below the silence
    level): not the lead-in, the offset after it, or the windows straddling them into the tone;
    the gaps between the beats of dry clicks are no pause."""
    x = np.concatenate([np.zeros(4 * SR), np.full(SR, 0.01), tone(440.0, 6.0)]).astype(np.float32)
    starts = np.arange(0.0, 9.0, 0.5)
    sound = levels.sounding_windows(x, starts, 3.0, sample_rate=SR, silence_dbfs=-60.0)
    np.testing.assert_array_equal(sound, starts >= 5.0)
    quiet = tone(440.0, 6.0, amplitude=10 ** (-50 / 20) * np.sqrt(2))  # -50 dBFS: quiet, heard
    assert levels.sounding_windows(quiet, starts[:7], 3.0, sample_rate=SR, silence_dbfs=-60.0).all()
    beats = clicks(80.0, 9.0)  # 0.75 s apart, silent between
    assert levels.sounding_windows(
        beats, starts[:13], 3.0, sample_rate=SR, silence_dbfs=-60.0
    ).all()
    too_short = levels.sounding_windows(x[:100], [0.0], 3.0, sample_rate=SR, silence_dbfs=-60.0)
    assert too_short.tolist() == [True]


def test_a_second_of_quiet_is_a_pause_and_less_is_a_gap_between_notes():
    """PAUSE_S: a window over 1.2 s of silence between two passages is no sound, one over 0.8 s
    of it is."""
    for gap_s, heard in ((1.2, False), (0.8, True)):
        x = np.concatenate([tone(440.0, 5.0), np.zeros(int(gap_s * SR)), tone(330.0, 5.0)])
        sound = levels.sounding_windows(
            x.astype(np.float32), [0.0, 4.0], 3.0, sample_rate=SR, silence_dbfs=-60.0
        )
        assert sound.tolist() == [True, heard], gap_s


def test_a_signal_with_no_window_of_sound_is_heard_by_all_of_its_windows():
    """heard_windows: sounding_windows where any window is sound, every window where none is
    (a clip quiet throughout is read by all its windows, not by none)."""
    starts = np.arange(0.0, 7.0, 0.5)
    x = np.concatenate([np.zeros(4 * SR), tone(440.0, 6.0)]).astype(np.float32)
    sound = levels.sounding_windows(x, starts, 3.0, sample_rate=SR, silence_dbfs=-60.0)
    np.testing.assert_array_equal(levels.heard_windows(sound), sound)
    assert 0 < sound.sum() < sound.size
    silence = np.zeros(10 * SR, dtype=np.float32)
    none = levels.sounding_windows(silence, starts, 3.0, sample_rate=SR, silence_dbfs=-60.0)
    assert not none.any() and levels.heard_windows(none).all()
