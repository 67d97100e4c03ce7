"""Writing audio: every format the extension names decodes back to what was written."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, tone

from mirsearch import audio, containers
from mirsearch.encoding import CODECS, write
from mirsearch.errors import AudioError


def dominant_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_every_written_format_decodes_to_the_same_tone(write_audio, suffix):
    path = write_audio(f"tone{suffix}", tone(440.0, 4.0, sr=22_050), 22_050)
    decoded = audio.load(path)
    assert decoded.sample_rate == SR
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    assert decoded.info.duration_s == pytest.approx(4.0, abs=0.15)
    assert dominant_hz(decoded.samples, SR) == pytest.approx(440.0, abs=2.0)


def test_tags_and_bit_rate_are_written(tmp_path):
    x = tone(440.0, 10.0)
    rich = write(
        tmp_path / "rich.mp3", x, SR, bit_rate=128_000, tags={"title": "Été", "genre": "jazz"}
    )
    lean = write(tmp_path / "lean.mp3", x, SR, bit_rate=32_000)
    assert containers.probe(rich).tags["title"] == "Été"
    assert containers.probe(rich).tags["genre"] == "jazz"
    assert lean.stat().st_size < rich.stat().st_size / 2


def test_an_extension_without_a_codec_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(AudioError, match="cannot write '.xyz' files"):
        write(tmp_path / "clip.xyz", tone(440.0, 1.0), SR)
    assert not (tmp_path / "clip.xyz").exists()


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_a_loud_signal_is_clipped_at_full_scale_and_comes_back_whole(tmp_path, suffix):
    """Samples past full scale are clipped before encoding (a float codec would keep them, an
    integer one wrap them), and the resampler's last samples are written: 2.5 s comes back as
    2.5 s (AAC pads its last frame)."""
    loud = 1.5 * tone(440.0, 2.5) / 0.3
    decoded = audio.load(write(tmp_path / f"loud{suffix.upper()}", loud, SR)).samples
    assert np.abs(decoded).max() < 1.25
    padding = 2048 if suffix == ".m4a" else 0
    assert 2.5 * SR <= decoded.size <= 2.5 * SR + padding
