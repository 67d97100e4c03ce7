"""Taking a catalog track out of an upload: what is left is the other sound, whatever delay,
level or EQ the upload gave the track; a track the upload does not hold takes nothing out."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import SR, melody, noise, print_of

from mirsearch import fingerprint, residual
from mirsearch.config import AudioConfig, DuplicateConfig, FeatureConfig
from mirsearch.excerpts import excerpt
from mirsearch.scoring import Match


def along(*, query_offset_s: float, track_offset_s: float, duration_s: float, speed: float = 1.0):
    """A match of a track in an upload, as `match` gives it."""
    return Match(1, 1.0, query_offset_s, track_offset_s, duration_s, speed, 10, 0.9, 0.6)


def equalised(x: np.ndarray) -> np.ndarray:
    """A gentle EQ and level change: a one-pole low-pass mixed with the dry signal, at -4 dB."""
    low = np.zeros_like(x)
    for i in range(1, x.size):
        low[i] = 0.9 * low[i - 1] + 0.1 * x[i]
    return 0.63 * (0.6 * x + 0.8 * low)


@pytest.fixture(scope="module")
def track() -> np.ndarray:
    return melody(40.0, seed=11)


def test_the_track_taken_out_leaves_the_other_sound(track):
    """The track's 10 s from 20 s, 94 ms off the match's line (more than the fitted gain's
    frame: an MP3's encoder delay is ~70 ms) and equalised, under other music as loud: the rest
    is that music, the track's part of the upload gone."""
    other = melody(10.0, seed=12)
    copy = equalised(track[20 * SR - 1500 : 30 * SR - 1500])
    upload = (copy + other * np.sqrt(np.mean(copy**2) / np.mean(other**2))).astype(np.float32)
    match = along(query_offset_s=0.0, track_offset_s=20.0, duration_s=10.0)
    start_s, _ = residual.span(match)
    first = round(start_s * SR)
    rest, share = residual.taken_out(upload, track[first:], start_s, match, sample_rate=SR)
    wanted = upload - copy
    assert np.corrcoef(upload, wanted)[0, 1] < 0.75  # the mix, before
    assert np.corrcoef(rest[SR:-SR], wanted[SR:-SR])[0, 1] > 0.97
    assert share == pytest.approx(np.sum(wanted**2) / np.sum(upload**2), abs=0.05)


def test_a_clean_copy_leaves_nothing_and_a_track_not_there_takes_nothing(track):
    match = along(query_offset_s=2.0, track_offset_s=5.0, duration_s=8.0)
    upload = np.concatenate([noise(2.0, seed=1, amplitude=0.01), track[5 * SR : 13 * SR]])
    _, share = residual.taken_out(upload, track, 0.0, match, sample_rate=SR)
    assert share < 0.01
    stranger = melody(12.0, seed=13)
    rest, share = residual.taken_out(stranger, track, 0.0, match, sample_rate=SR)
    assert share > 0.95
    assert np.corrcoef(rest, stranger)[0, 1] > 0.97


def test_only_the_matched_stretch_of_the_upload_is_touched(track):
    """Music before and after the stretch the match spans is left as it was."""
    upload = melody(20.0, seed=14)
    match = along(query_offset_s=6.0, track_offset_s=10.0, duration_s=8.0)
    rest, _ = residual.taken_out(upload, track, 0.0, match, sample_rate=SR)
    assert np.array_equal(rest[: 6 * SR], upload[: 6 * SR])
    assert np.array_equal(rest[14 * SR :], upload[14 * SR :])


def test_a_sped_up_copy_is_taken_out_at_its_speed(track):
    """A copy played 5 % fast (the match's speed 1.05): laid at that speed, it comes out."""
    source = track[10 * SR : 22 * SR]
    fast = np.interp(np.arange(0, source.size - 1, 1.05), np.arange(source.size), source)
    upload = fast[: 10 * SR].astype(np.float32)
    match = along(query_offset_s=0.0, track_offset_s=10.0, duration_s=10.0, speed=1.05)
    _, share = residual.taken_out(upload, track, 0.0, match, sample_rate=SR)
    assert share < 0.05
    at_one = along(query_offset_s=0.0, track_offset_s=10.0, duration_s=10.0, speed=1.0)
    _, unmoved = residual.taken_out(upload, track, 0.0, at_one, sample_rate=SR)
    assert unmoved > 0.5


def test_the_span_to_decode_reaches_the_shift_on_both_sides():
    match = along(query_offset_s=1.0, track_offset_s=30.0, duration_s=10.0, speed=1.002)
    assert residual.span(match) == pytest.approx(
        (30.0 - residual.MAX_LAG_S, 10.0 + 2 * residual.MAX_LAG_S)
    )
    assert residual.span(along(query_offset_s=0.0, track_offset_s=0.1, duration_s=5.0))[0] == 0.0


def test_the_short_time_transform_gives_the_signal_back():
    x = noise(3.0, seed=2)
    assert np.allclose(residual._istft(residual._stft(x), x.size), x, atol=1e-5)


def test_a_match_narrowed_keeps_its_line():
    match = along(query_offset_s=2.0, track_offset_s=30.0, duration_s=10.0, speed=1.05)
    probe = residual.narrowed(match, 3.0)
    assert (probe.query_offset_s, probe.duration_s) == (5.5, 3.0)
    assert probe.track_offset_s == pytest.approx(30.0 + 1.05 * 3.5)
    assert residual.narrowed(match, 12.0) is match
    assert residual.narrowed(match, 3.0, around_s=4.0).query_offset_s == 2.5
    assert residual.narrowed(match, 3.0, around_s=0.0).query_offset_s == 2.0  # kept inside
    assert residual.narrowed(match, 3.0, around_s=11.9).query_offset_s == 9.0


def under_the_end(copy: np.ndarray, other: np.ndarray, level_db: float) -> np.ndarray:
    """`copy` with `other` mixed under its last len(other) samples, `level_db` below them."""
    upload = copy.copy()
    end = upload[-other.size :]
    end += other * np.sqrt(np.mean(end**2) / np.mean(other**2)) * 10 ** (level_db / 20)
    return upload


def test_the_probe_goes_where_another_sound_owns_the_print(track):
    """Another melody 12 dB under the last 6 s of a 20 s copy, equalised: the stretch where
    another sound owns most print cells is there, and it owns more of them than the threshold;
    a clean copy, equalised as much, owns next to none."""
    copy = equalised(track[10 * SR : 30 * SR])
    upload = under_the_end(copy, melody(6.0, seed=16), -12.0)
    match = along(query_offset_s=0.0, track_offset_s=10.0, duration_s=20.0)
    stored = fingerprint.decode(fingerprint.encode(print_of(track)))  # as the catalog keeps it
    fps = fingerprint.print_frames_per_s(FeatureConfig())
    owned, at_s = residual.busiest(print_of(upload), stored, match, frames_per_s=fps)
    assert 14.0 + residual.PROBE_S / 2 - 0.5 <= at_s <= 20.0 - residual.PROBE_S / 2 + 0.1
    clean, _ = residual.busiest(print_of(copy), stored, match, frames_per_s=fps)
    assert clean < DuplicateConfig().rest_min_owned < owned


def test_a_track_under_part_of_the_upload_is_left_where_it_sounds(track, write_audio):
    """Probed in the middle, where the copy plays alone, nothing is left; probed where the
    other melody sounds, the rest is that melody there, and silence (a pause, not the removal's
    leftovers) where the copy played alone, though the whole match leaves under 2 % of its
    energy."""
    path = write_audio("track.flac", track)
    copy = track[10 * SR : 30 * SR]
    upload = under_the_end(copy, melody(6.0, seed=17), -12.0)
    match = along(query_offset_s=0.0, track_offset_s=10.0, duration_s=20.0)
    config = AudioConfig()
    assert residual.rest_of(upload, match, path, config=config, min_share=0.02) is None
    rest = residual.rest_of(upload, match, path, config=config, min_share=0.02, probe_at_s=17.0)
    wanted = upload - copy
    assert np.sum(wanted**2) < 0.02 * np.sum(upload**2)
    assert np.corrcoef(rest[15 * SR :], wanted[15 * SR :])[0, 1] > 0.97
    assert not rest[: 13 * SR].any()


def test_the_rest_of_a_clean_copy_is_none_after_its_probe_alone(
    track, write_audio, monkeypatch, caplog
):
    """A clean copy is taken out of the match's middle, nothing is left there, and the rest of
    the track is never decoded; under other music the whole stretch is, and the rest is that
    music; a file gone is no rest, said in the log."""
    path = write_audio("track.flac", track)
    decoded = []
    monkeypatch.setattr(
        residual,
        "excerpt",
        lambda *args, **options: decoded.append(args[2]) or excerpt(*args, **options),
    )
    match = along(query_offset_s=0.0, track_offset_s=20.0, duration_s=10.0)
    copy = track[20 * SR : 30 * SR]
    assert residual.rest_of(copy, match, path, config=AudioConfig(), min_share=0.02) is None
    assert decoded == [pytest.approx(residual.PROBE_S + 2 * residual.MAX_LAG_S)]
    other = melody(10.0, seed=15)
    upload = copy + other * np.sqrt(np.mean(copy**2) / np.mean(other**2)) * 0.25
    rest = residual.rest_of(upload, match, path, config=AudioConfig(), min_share=0.02)
    assert len(decoded) == 3
    assert np.corrcoef(rest[SR:-SR], upload[SR:-SR] - copy[SR:-SR])[0, 1] > 0.97
    gone = path.with_name("gone.flac")
    with caplog.at_level(logging.INFO, logger="mirsearch.residual"):
        assert residual.rest_of(upload, match, gone, config=AudioConfig(), min_share=0.02) is None
    assert "track 1 not taken out of the upload" in caplog.text and "gone.flac" in caplog.text
