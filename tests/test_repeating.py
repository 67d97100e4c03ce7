"""Music under talk: the repeating part of a spectrogram, and what `match` reads of it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, melody, talk

from mirsearch import repeating
from mirsearch.config import EmbeddingConfig, FeatureConfig
from mirsearch.fingerprint import make_print
from mirsearch.matcher import Matcher
from mirsearch.repeating import repeating_part, under_other_sound
from mirsearch.spectrogram import log_mels, mel_powers

FEATURES = FeatureConfig()
FPS = FEATURES.frames_per_s


def loop(seconds: float, *, seed: int, bar_s: float = 2.0) -> np.ndarray:
    """A bar of melody played over and over: music as it repeats."""
    bar = melody(bar_s, seed=seed)
    return np.resize(bar, int(seconds * SR))


def db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(power, 1e-10))


def test_what_repeats_is_kept_and_a_voice_over_it_is_not():
    """A looped bar with a voice over its middle third: the repeating part holds the loop's
    cells where no voice is (within a few dB), and lies far below the mix where the voice
    is louder than the loop; it is never above the mix."""
    music = loop(15.0, seed=1)
    voice = np.zeros_like(music)
    voice[5 * SR : 10 * SR] = talk(5.0, seed=2) * 2.0
    power = mel_powers(music + voice, FEATURES)[0]
    part = repeating_part(power, FPS)
    assert part.shape == power.shape and np.all(part <= power)
    loud = power > 1e-6 * power.max()
    alone = np.zeros_like(loud)
    alone[:, : int(4.5 * FPS)] = True
    alone[:, int(10.5 * FPS) :] = True
    music_power, voice_power = (mel_powers(x, FEATURES)[0] for x in (music, voice))
    covered = loud & (voice_power > 10 * music_power)
    assert covered.sum() > 1000
    assert np.median(np.abs(db(part) - db(power))[alone & loud]) < 3.0
    assert np.median((db(part) - db(power))[covered]) < -10.0


def test_a_long_signal_is_separated_block_by_block_a_short_tail_with_the_block_before(
    monkeypatch,
):
    """Frames are compared within their block of BLOCK_S only (a block's frames² memory): the
    second block of 3.5 reads as that block alone, and the half block at the end joins it."""
    monkeypatch.setattr(repeating, "BLOCK_S", 4.0)
    power = mel_powers(loop(13.5, seed=3, bar_s=1.0) + talk(13.5, seed=4), FEATURES)[0]
    part = repeating_part(power, FPS)
    block = round(4.0 * FPS)
    second = slice(block, 2 * block)
    np.testing.assert_allclose(part[:, second], repeating_part(power[:, second], FPS), rtol=1e-5)
    last = slice(2 * block, power.shape[1])  # the third block and the 1.5 s tail together
    np.testing.assert_allclose(part[:, last], repeating_part(power[:, last], FPS), rtol=1e-5)
    assert not np.allclose(
        part[:, 3 * block :], repeating_part(power[:, 3 * block :], FPS), rtol=1e-3
    )


@pytest.fixture(scope="module")
def reader() -> Matcher:
    return Matcher()


def test_the_repeating_parts_windows_are_the_musics_and_the_print_weighs_out_the_voice(reader):
    """Music as loud as the voice over it: the repeating part's windows are nearer the music's
    own than the mix's are; the print is the mix's, its weights low where the voice is loudest
    and high where the music plays alone."""
    music = loop(12.0, seed=6)
    voice = talk(12.0, seed=7)
    voice *= np.sqrt(np.mean(music**2) / np.mean(voice**2))
    voice[: 3 * SR] = 0.0  # the first 3 s music alone
    mix = music + voice
    config = EmbeddingConfig()
    read = under_other_sound(reader, mix, hop_s=0.5, config=config)
    (clean,) = reader.matching(music, hop_s=0.5, frequency_scales=(1.0,))
    (whole,) = reader.matching(mix, hop_s=0.5, frequency_scales=(1.0,))
    np.testing.assert_array_equal(read.offsets_s, whole.offsets_s)
    np.testing.assert_allclose(read.fingerprint, whole.fingerprint, atol=1e-3)
    talked = read.offsets_s >= 3.0
    separated = np.sum(read.vectors * clean.vectors, axis=1)[talked]
    mixed = np.sum(whole.vectors * clean.vectors, axis=1)[talked]
    assert np.mean(separated) > np.mean(mixed) + 0.05

    print_of = lambda x: make_print(log_mels(x, FEATURES)[0], FEATURES)  # noqa: E731
    assert read.weights.shape == read.fingerprint.shape
    assert read.weights.min() >= 0.0 and read.weights.max() <= 1.0
    frames_alone = slice(0, int(2.5 * FPS / 2))  # print frames pool two log-mel frames
    voiced = print_of(voice) > print_of(music) + 10.0
    assert np.mean(read.weights[:, frames_alone]) > 0.7
    assert np.mean(read.weights[voiced]) < 0.35
