"""Decoding a stretch of a file by seeking: the same samples as the whole file's there."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, melody

from mirsearch.audio import load
from mirsearch.errors import AudioError
from mirsearch.excerpts import excerpt


@pytest.mark.parametrize("name", ["song.ogg", "song.mp3", "song.flac", "song.wav", "song.m4a"])
def test_an_excerpt_holds_the_whole_files_samples_where_it_says_it_begins(write_audio, name):
    """To within a codec's delay (an MP3's 1,105 samples, Opus's pre-skip), which taking a
    track out of an upload absorbs in its shift (residual.MAX_LAG_S)."""
    path = write_audio(name, melody(30.0, seed=3))
    whole = load(path).samples
    samples, first_s = excerpt(path, 12.0, 3.0)
    assert 11.0 <= first_s <= 12.05
    assert samples.size >= (12.0 + 3.0 - first_s) * SR
    ours = samples[SR // 4 : SR // 4 + 2 * SR]
    at = round(first_s * SR) + SR // 4
    reach = SR // 10
    lags = range(-reach, reach + 1)
    alike = [np.corrcoef(whole[at + lag : at + lag + ours.size], ours)[0, 1] for lag in lags]
    assert max(alike) > 0.99


def test_an_excerpt_from_the_start_begins_at_zero(write_audio):
    path = write_audio("song.ogg", melody(8.0, seed=4), SR)
    samples, first_s = excerpt(path, 0.0, 2.0)
    assert first_s == pytest.approx(0.0, abs=0.03)
    assert 2 * SR <= samples.size < 8 * SR  # not decoded to its end


def test_an_excerpt_past_the_end_or_of_no_file_is_an_audio_error(write_audio, tmp_path):
    path = write_audio("short.ogg", melody(4.0, seed=5), SR)
    with pytest.raises(AudioError, match="no audio from 60.0 s"):
        excerpt(path, 60.0, 2.0)
    with pytest.raises(AudioError, match="no such file"):
        excerpt(tmp_path / "gone.ogg", 0.0, 2.0)
