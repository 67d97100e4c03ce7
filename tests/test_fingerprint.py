"""Verification prints on synthetic music: made, stored compactly, read back still agreeing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PRINT_CHECK, SR, melody, print_of, whole

from mirsearch import audio, fingerprint, verification
from mirsearch.config import FeatureConfig
from mirsearch.errors import IndexMismatchError
from mirsearch.features import log_mel

CONFIG = FeatureConfig()
FPS = fingerprint.print_frames_per_s(CONFIG)


def test_print_keeps_the_mid_bands_in_pairs_at_32_frames_a_second():
    p = print_of(melody(10.0, seed=0))
    assert p.dtype == np.float32
    assert FPS == 32.0
    assert p.shape[1] == pytest.approx(10.0 * FPS, abs=1)
    assert 20 <= p.shape[0] <= 24  # pairs of mel bands centred between 150 Hz and 3.8 kHz


def test_the_stored_print_takes_a_few_bits_per_value_and_keeps_agreeing():
    track = melody(60.0, seed=5)
    p = print_of(track)
    data = fingerprint.encode(p)
    assert len(data) < p.size * fingerprint.BITS / 8  # deflate takes off more than the header
    stored = fingerprint.decode(data)
    assert stored.shape == p.shape and stored.dtype == np.float32
    centred = p - p.mean(axis=0)
    half = fingerprint.STEP_DB * 2 ** (fingerprint.BITS - 1)
    inside = np.abs(centred) < half - fingerprint.STEP_DB
    assert np.abs(stored - centred)[inside].max() <= fingerprint.STEP_DB / 2 + 1e-4
    clip = print_of(track[20 * SR : 30 * SR])
    at_20s = whole(10.0, track_offset_s=20.0)
    assert verification.check(clip, p, at_20s, **PRINT_CHECK).agreement > 0.99
    # 5 bits in 3 dB steps reach ±48 dB: this melody's sparse notes (-80 dB floor between them)
    # agree at 0.99 (format 2's 4 bits clipped them at ±24 dB: 0.89)
    assert verification.check(clip, stored, at_20s, **PRINT_CHECK).agreement > 0.97
    other = print_of(melody(10.0, seed=6))
    assert verification.check(other, stored, at_20s, **PRINT_CHECK).agreement < 0.3


def test_a_print_of_another_format_is_refused_with_the_way_out():
    data = fingerprint.encode(print_of(melody(5.0, seed=0)))
    with pytest.raises(IndexMismatchError, match="db upgrade"):
        fingerprint.decode(data, format=1)


def test_decoded_prints_are_reused_read_only_within_a_byte_budget():
    prints = [print_of(melody(20.0, seed=seed)) for seed in (1, 2, 3)]
    stored = [fingerprint.encode(p) for p in prints]
    cache = fingerprint._Decoded(capacity=2 * prints[0].nbytes + 1)  # room for two
    first = cache.get(stored[0], fingerprint.FORMAT)
    assert np.array_equal(first, fingerprint._decode(stored[0], fingerprint.FORMAT))
    assert not first.flags.writeable  # shared: a caller cannot change another's print
    assert cache.get(bytes(stored[0]), fingerprint.FORMAT) is first  # equal bytes: reused
    assert cache.get(memoryview(stored[0]), fingerprint.FORMAT) is first  # as PostgreSQL gives
    second = cache.get(stored[1], fingerprint.FORMAT)
    assert not np.array_equal(second, first)  # another print (a track indexed again) is its own
    cache.get(stored[0], fingerprint.FORMAT)  # used again: now the second is the oldest
    cache.get(stored[2], fingerprint.FORMAT)  # over budget: the least recently used goes
    assert cache.get(stored[0], fingerprint.FORMAT) is first
    assert cache.get(stored[1], fingerprint.FORMAT) is not second  # decoded afresh
    assert np.array_equal(
        fingerprint.decode(stored[2]), fingerprint._decode(stored[2], fingerprint.FORMAT)
    )


@pytest.mark.parametrize("name", ["wesnoth__battle-epic.ogg", "hedgewars__city.wav"])
def test_music_is_stored_in_steps_from_frame_to_frame_a_third_smaller_than_bit_planes(
    shared_audio, name
):
    """Format 4 stores the values format 3 stored, in fewer bytes: a band of music changes
    little from one frame to the next."""
    samples = audio.load(shared_audio / name).samples[: 60 * SR]
    p = print_of(samples)
    planes, steps = fingerprint.encode(p, format=3), fingerprint.encode(p)
    assert fingerprint.FORMAT == 4
    assert np.array_equal(fingerprint.decode(planes, format=3), fingerprint.decode(steps))
    assert len(steps) < 0.75 * len(planes)


def test_a_print_of_silence_or_of_no_frames_comes_back_as_it_went():
    silent = np.full((22, 320), -80.0, dtype=np.float32)
    empty = np.zeros((22, 0), dtype=np.float32)
    assert np.array_equal(fingerprint.decode(fingerprint.encode(silent)), np.zeros_like(silent))
    assert fingerprint.decode(fingerprint.encode(empty)).shape == (22, 0)


def test_a_format_2_print_of_the_previous_version_is_still_read_and_agrees():
    """Format 2 kept 4 bits (values clipped at ±24 dB); a catalog written with it needs no
    re-indexing, and the current format keeps what format 2 clipped."""
    track = melody(30.0, seed=9)
    p = print_of(track)
    old = fingerprint.decode(fingerprint.encode(p, format=2), format=2)
    new = fingerprint.decode(fingerprint.encode(p))
    centred = p - p.mean(axis=0)
    assert fingerprint.FORMAT != 2 and old.shape == new.shape == p.shape
    assert np.abs(old).max() <= 24.0 < np.abs(centred).max()
    assert np.abs(new - centred).mean() < np.abs(old - centred).mean()
    clip = print_of(track[10 * SR : 20 * SR])
    assert (
        verification.check(clip, old, whole(10.0, track_offset_s=10.0), **PRINT_CHECK).agreement
        > 0.85
    )


def test_a_format_1_print_converts_to_what_make_print_gives():
    """Format 1: one byte (dB + 80) per kept mel band at 32 fps; migration 0003 converts it."""
    mel_db = log_mel(torch.from_numpy(melody(10.0, seed=8)), CONFIG).numpy()
    kept = mel_db[fingerprint._kept_bands(CONFIG)]
    n = kept.shape[1] // 2 * 2
    one_byte = np.round(kept[:, :n].reshape(len(kept), -1, 2).mean(axis=2) + 80).astype(np.uint8)
    converted = fingerprint.from_format_1(one_byte.tobytes(), len(kept))
    expected = fingerprint.make_print(mel_db, CONFIG)
    assert converted.shape == expected.shape
    assert np.abs((converted - 80) - expected).max() < 0.6  # the byte's rounding only


@pytest.mark.parametrize("frames", [321, 5, 1])
def test_bit_plane_prints_of_any_length_read_back_whole(frames):
    """Formats 2 and 3 (catalogs of earlier versions) packed each bit plane into whole bytes:
    a print of bands × frames values not a multiple of 8 has a padded last byte in every plane,
    which the reader must skip to find the next plane."""
    rng = np.random.default_rng(frames)
    p = rng.normal(0.0, 12.0, (22, frames)).astype(np.float32)
    centred = p - p.mean(axis=0)
    four_bits = np.clip(np.round(centred / 3.0), -8, 7) * 3.0
    assert (22 * frames) % 8
    assert np.array_equal(fingerprint.decode(fingerprint.encode(p, format=2), format=2), four_bits)
    assert np.array_equal(
        fingerprint.decode(fingerprint.encode(p, format=3), format=3),
        fingerprint.decode(fingerprint.encode(p)),
    )
