"""The alignment check on synthetic music: a copy agrees and draws its line, other notes on the
same sound do not; on real music, the line a copy follows is found from the windows' rough one."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import PRINT_CHECK, SR, melody, noise, print_of, tone, whole

from mirsearch import correlation, fingerprint, verification
from mirsearch.audio import load
from mirsearch.config import FeatureConfig
from mirsearch.transforms import speed, tempo

FPS = fingerprint.print_frames_per_s(FeatureConfig())


@pytest.fixture(scope="module")
def batcave(shared_audio) -> np.ndarray:
    """The first 90 s of a shared track (16 kHz mono)."""
    return load(shared_audio / "xmoto__batcave.mp3").samples[: 90 * SR]


def test_an_excerpt_agrees_with_its_track_even_offset_by_most_of_a_second():
    """The embedding line only knows the offset to within a catalog hop; the chunks find the
    excerpt at its lag and the check puts the line back where the excerpt was cut."""
    track = melody(30.0, seed=1)
    clip = track[10 * SR : 20 * SR]
    line = whole(10.0, track_offset_s=10.7)
    checked = verification.check(print_of(clip), print_of(track), line, **PRINT_CHECK)
    assert checked.agreement > 0.9
    assert checked.alignment.track_offset_s == pytest.approx(10.0, abs=1 / 32)
    assert checked.alignment.speed == pytest.approx(1.0, abs=0.002)


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_a_copy_played_faster_or_slower_is_refitted_to_its_speed(factor):
    """Checked on a line at speed 1.0 (where the windows' vote settles near-ties), a copy
    stretched 5 % is found drifting chunk after chunk: the refitted line has its speed."""
    track = melody(40.0, seed=5)
    clip = tempo(track[10 * SR : 22 * SR], SR, factor=factor)[0]
    line = whole(clip.size / SR, track_offset_s=10.0)
    checked = verification.check(print_of(clip), print_of(track), line, **PRINT_CHECK)
    assert checked.agreement > 0.6
    assert checked.alignment.speed == pytest.approx(factor, abs=0.005)
    assert checked.alignment.track_offset_s == pytest.approx(10.0, abs=0.1)


def test_other_music_leaves_the_line_where_it_was():
    track, other = melody(30.0, seed=3), melody(30.0, seed=4)
    line = whole(10.0, track_offset_s=5.0)
    checked = verification.check(
        print_of(other[5 * SR : 15 * SR]), print_of(track), line, **PRINT_CHECK
    )
    assert checked.alignment == line


def test_lines_checked_together_read_as_each_checked_alone():
    """One pass over the chunks of several lines (two tracks, a copy at 5 % fast, other music, a
    line past the track's end, a stretch of one chunk) gives each line what checking it alone
    gives."""
    track, other = melody(40.0, seed=5), melody(30.0, seed=4)
    fast = tempo(track[10 * SR : 22 * SR], SR, factor=1.05)[0]
    items = [
        (print_of(track[5 * SR : 15 * SR]), print_of(track), whole(10.0, track_offset_s=5.4)),
        (print_of(fast), print_of(track), whole(fast.size / SR, track_offset_s=10.0)),
        (print_of(other[: 10 * SR]), print_of(track), whole(10.0, track_offset_s=20.0)),
        (print_of(track[: 8 * SR]), print_of(other), whole(8.0, track_offset_s=3.0)),
        (print_of(track[: 8 * SR]), print_of(other), whole(8.0, track_offset_s=45.0)),
        (
            print_of(track[20 * SR : 23 * SR + SR // 2]),
            print_of(track),
            whole(3.5, track_offset_s=20.0),
        ),
    ]
    together = verification.checks(items, **PRINT_CHECK)
    alone = [verification.check(*item, **PRINT_CHECK) for item in items]
    assert len(together) == len(items)
    for a, b in zip(together, alone, strict=True):
        assert a.agreement == pytest.approx(b.agreement, abs=1e-9)
        assert a.alignment.track_offset_s == pytest.approx(b.alignment.track_offset_s, abs=1e-9)
        assert a.alignment.speed == pytest.approx(b.alignment.speed, abs=1e-9)
    assert together[0].agreement > 0.9 and together[1].alignment.speed == pytest.approx(
        1.05, abs=0.005
    )
    assert together[4] == verification.Check(0.0, items[4][2])  # no chunk inside the track
    assert together[5].agreement > 0.9  # a stretch of one chunk
    assert verification.checks([], **PRINT_CHECK) == []


def test_gain_eq_and_noise_leave_a_copy_agreeing():
    track = melody(30.0, seed=2)
    clip = track[5 * SR : 15 * SR]
    spectrum = np.fft.rfft(clip * 2.0)  # +6 dB
    tilt = np.linspace(1.0, 0.3, spectrum.size)  # a treble cut
    changed = np.fft.irfft(spectrum * tilt, n=clip.size).astype(np.float32)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(clip.size).astype(np.float32)
    changed += noise * np.sqrt(np.mean(changed**2) / 10 ** (20 / 10))  # SNR 20 dB
    score = verification.check(
        print_of(changed), print_of(track), whole(10.0, track_offset_s=5.0), **PRINT_CHECK
    ).agreement
    assert score > 0.6


def test_other_notes_on_the_same_instrument_do_not_agree():
    track, other = melody(30.0, seed=3), melody(30.0, seed=4)
    score = verification.check(
        print_of(other[5 * SR : 15 * SR]),
        print_of(track),
        whole(10.0, track_offset_s=5.0),
        **PRINT_CHECK,
    ).agreement
    assert score < 0.3


def test_other_music_underneath_costs_a_copy_less_with_the_quiet_cells_floored(monkeypatch):
    """Another melody mixed 12 dB under a copy fills its quiet cells; floored, they pull the
    copy's agreement down less, and other music gains nothing from the floor."""
    gains, others, slopes = [], [], (correlation.FLOOR_SLOPE, 1.0)  # 1.0: no floor
    for seed in range(4):
        track, other = melody(30.0, seed=10 + seed), melody(30.0, seed=20 + seed)
        clip, under = track[5 * SR : 15 * SR], other[: 10 * SR]
        mixed = clip + under * np.sqrt(np.mean(clip**2) / np.mean(under**2)) * 10 ** (-12 / 20)
        at_5s = whole(10.0, track_offset_s=5.0)
        scores = {}
        for slope in slopes:
            monkeypatch.setattr(correlation, "FLOOR_SLOPE", slope)
            scores[slope] = [
                verification.check(print_of(q), print_of(track), at_5s, **PRINT_CHECK).agreement
                for q in (mixed, other[5 * SR : 15 * SR])
            ]
        (copy, alien), (copy_unfloored, alien_unfloored) = scores.values()
        gains.append(copy - copy_unfloored)
        others.append(alien - alien_unfloored)
    assert np.mean(gains) > 0.015
    assert min(gains) > 0.0
    assert max(others) < 0.01


def test_a_shared_fade_in_is_not_agreement():
    """Two different sounds fading in together: the loudness contour alone must not match
    (centred per band only, these two correlate at about 0.75)."""
    fade = (10 ** np.linspace(-2.0, 0.0, 10 * SR)).astype(np.float32)  # -40 dB → 0 dB
    a = noise(10.0, seed=1) * fade
    b = (tone(400.0, 10.0) + tone(900.0, 10.0) + tone(1700.0, 10.0)) * fade
    assert verification.check(print_of(a), print_of(b), whole(10.0), **PRINT_CHECK).agreement < 0.2


def test_no_overlap_gives_zero():
    p = print_of(melody(5.0, seed=7))
    beyond = whole(5.0, track_offset_s=60.0)
    assert verification.check(p, p, beyond, **PRINT_CHECK).agreement == 0.0
    empty = np.zeros((p.shape[0], 0), dtype=np.float32)
    assert verification.check(empty, p, whole(5.0), **PRINT_CHECK).agreement == 0.0


def test_sound_alike_at_every_lag_is_discounted_and_a_copy_keeps_its_peak():
    """Two prints sharing a slow contour (pads, drones) but not their detail correlate at every
    lag; a copy correlates best at its own lag. The background share pulls the first down far
    more than the second."""
    rng = np.random.default_rng(0)
    bands, frames = 22, int(20 * FPS)
    phases = rng.uniform(0, 2 * np.pi, (bands, 1))
    slow = 6 * np.sin(2 * np.pi * np.arange(frames)[None, :] / (10 * FPS) + phases)
    detail = rng.normal(0, 3, (bands, frames))
    track = (slow + detail).astype(np.float32)
    copy = (track + rng.normal(0, 3, (bands, frames))).astype(np.float32)
    alike = (slow + rng.normal(0, 3, (bands, frames))).astype(np.float32)

    def agreement(query, background):
        checked = verification.check(
            query, track, whole(20.0), **PRINT_CHECK, background=background
        )
        return checked.agreement

    assert agreement(alike, 0.5) < 0.65 * agreement(alike, 0.0)
    assert agreement(copy, 0.5) > 0.8 * agreement(copy, 0.0)


@pytest.mark.parametrize(
    ("upload_s", "windows_line"),
    [  # the lines the windows' vote drew for these uploads (a catalog hop coarse, off speed)
        ((0, 60), verification.Alignment(18.5, 45.5, 0.0, 0.94)),
        ((10, 50), verification.Alignment(8.5, 35.0, 0.0, 0.96)),
    ],
)
def test_an_excerpt_inside_a_longer_upload_is_placed_where_it_plays(
    batcave, upload_s, windows_line
):
    """A sample-exact 25 s excerpt (from 20 s) inside an upload of the song: the windows' line
    begins before it at 0.94-0.96, its first chunks hang over the excerpt's start. The check
    puts it at speed 1.0 from where it plays in the upload (it had kept the windows' line:
    1.5 s early, 'plays 5.3 % faster')."""
    excerpt, upload = batcave[20 * SR : 45 * SR], batcave[upload_s[0] * SR : upload_s[1] * SR]
    checked = verification.check(print_of(upload), print_of(excerpt), windows_line, **PRINT_CHECK)
    assert checked.agreement > 0.9
    assert checked.alignment.speed == pytest.approx(1.0, abs=0.005)
    assert checked.alignment.query_start_s == pytest.approx(20.0 - upload_s[0], abs=0.1)
    assert checked.alignment.query_end_s == pytest.approx(45.0 - upload_s[0], abs=0.1)
    assert checked.alignment.track_offset_s == pytest.approx(0.0, abs=0.1)


def test_a_line_begun_at_the_tracks_start_keeps_it_once_refitted(batcave):
    """A 10 s track and its exact copy: the windows' vote put the track's start a catalog hop
    late, at 0.5 s of the upload. Refitted, the track begins where the upload does (it had been
    matched from 0.5 s for 9.5 s); a line begun inside the track keeps its start."""
    track = print_of(batcave[40 * SR : 50 * SR])
    pinned = verification.Alignment(0.5, 10.0, 0.0, 1.0)
    fitted = verification.check(track, track, pinned, **PRINT_CHECK).alignment
    assert fitted.query_start_s == pytest.approx(0.0, abs=1 / 32)
    assert fitted.track_offset_s == pytest.approx(0.0, abs=1 / 32)
    assert fitted.query_end_s == pytest.approx(10.0, abs=1 / 32)
    inside = verification.Alignment(0.5, 10.0, 0.25, 1.0)
    kept = verification.check(track, track, inside, **PRINT_CHECK).alignment
    assert kept.query_start_s == 0.5
    assert kept.track_offset_s == pytest.approx(0.5, abs=1 / 32)


def test_a_copy_of_a_copy_10_percent_away_checked_at_speed_one_gets_its_speed(batcave):
    """Real music, a clip of its copy 5 % fast checked on a line at 1.0 (where a reading
    shifted by a semitone lined its windows up) against its copy 5 % slow: the chunks drift a
    tenth of a second a second, each smeared over its own drift. The line is found at 1.05/0.95
    with the offset where the clip lies (it had been kept at 1.000, half a second off), and
    checked on the same clip, the exact copy stays at 1.0."""
    fast, slow = (speed(batcave, SR, factor=f)[0] for f in (1.05, 0.95))
    clip = print_of(fast[50 * SR : 60 * SR])
    windows_line = verification.Alignment(0.0, 10.0, 55.75, 1.0)
    other = verification.check(clip, print_of(slow), windows_line, **PRINT_CHECK).alignment
    assert other.speed == pytest.approx(1.05 / 0.95, rel=0.01)
    assert other.track_offset_s == pytest.approx(50 * 1.05 / 0.95, abs=0.1)
    exact = verification.Alignment(0.0, 10.0, 50.4, 1.0)
    same = verification.check(clip, print_of(fast), exact, **PRINT_CHECK).alignment
    assert same.speed == pytest.approx(1.0, abs=0.005)
    assert same.track_offset_s == pytest.approx(50.0, abs=0.1)


def test_a_copy_found_off_its_line_is_checked_again_along_it(batcave):
    """The agreement told of a copy whose line the chunks redrew is read along that line, as
    if the vote had found it: read on the line at 1.0 where each chunk was smeared over its
    drift, a copy of a copy 10.5 % away had agreed by half as much."""
    fast, slow = (speed(batcave, SR, factor=f)[0] for f in (1.05, 0.95))
    clip, other_version = print_of(fast[50 * SR : 60 * SR]), print_of(slow)
    found = verification.check(
        clip, other_version, verification.Alignment(0.0, 10.0, 55.75, 1.0), **PRINT_CHECK
    )
    on_its_line = verification.check(clip, other_version, found.alignment, **PRINT_CHECK)
    assert found.agreement > 0.5
    assert found.agreement == pytest.approx(on_its_line.agreement, abs=0.02)


def test_chunks_pinned_at_the_edge_of_their_lags_draw_no_line(batcave):
    """30 s of a copy 10.5 % away checked at speed 1.0 drift past the ±1 s each chunk may slide:
    most chunks' best lags sit at that bound, on a flat line no copy follows. The free ones draw
    the copy's. Checked against the original, 5 % away, the line is found within 6/10,000 of its
    speed (the chunks read again along the line they drew, and fitted once more)."""
    fast, slow = (speed(batcave, SR, factor=f)[0] for f in (1.05, 0.95))
    clip = print_of(fast[20 * SR : 50 * SR])
    line = verification.Alignment(0.0, 30.0, 20 * 1.05 / 0.95 + 0.5, 1.0)
    other = verification.check(clip, print_of(slow), line, **PRINT_CHECK)
    assert other.agreement > 0.5
    assert other.alignment.speed == pytest.approx(1.05 / 0.95, abs=0.01)
    original = verification.check(
        clip, print_of(batcave), whole(30.0, track_offset_s=21.0), **PRINT_CHECK
    )
    assert original.alignment.speed == pytest.approx(1.05, abs=0.0006)
    assert original.alignment.track_offset_s == pytest.approx(21.0, abs=0.01)


def test_no_line_steeper_than_a_copy_can_be_is_drawn():
    """The chunks' best lags are fitted to a line of at most RESPEED_MAX_CHANGE's slope: lags a
    second apart over a few seconds are chunks caught on other beats, not a copy's speed."""
    centres = np.arange(1.0, 9.0)
    line = whole(10.0, track_offset_s=5.0)

    def fitted(slope: float) -> verification.Alignment | None:
        lags = slope * (centres - centres[0]) - 0.5
        read = verification._Read(agreement=0.5, centres_s=centres, lags_s=lags)
        return verification._fitted(line, read)

    assert fitted(0.1).speed == pytest.approx(1.1)
    assert fitted(0.2) is None


def test_a_long_stretch_is_read_on_max_chunks_spread_over_it_each_inside_the_track():
    query = np.zeros((22, round(60 * FPS)), np.float32)
    lags = np.arange(-32, 33)
    cut = functools.partial(
        verification._chunks,
        n=round(3 * FPS),
        hop=round(FPS),
        lags=lags,
        max_chunks=10,
        frames_per_s=FPS,
    )
    spread = cut(query, np.zeros((22, round(60 * FPS)), np.float32), whole(60.0))
    assert len(spread) == 10
    assert spread.frames[0, 0] == 0 and spread.frames[-1, -1] == query.shape[1] - 1
    track = np.zeros((22, round(30 * FPS)), np.float32)  # the line leaves it at both ends
    chunks = cut(query, track, whole(60.0, track_offset_s=-10.0))
    reached = chunks.columns[:, None, :] + lags[None, :, None]  # (chunks, lags, n) track frames
    on_track = ((reached >= 0) & (reached < track.shape[1])).all(axis=2)
    assert len(chunks) and (chunks.inside == on_track).all() and on_track.any(axis=1).all()


def test_row_medians_are_the_medians_of_the_kept_columns():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 9))
    kept = rng.random((50, 9)) < 0.6
    kept[:, 0] = True
    medians = verification._row_medians(x, kept)
    assert medians == pytest.approx([np.median(row[k]) for row, k in zip(x, kept, strict=True)])


def test_a_print_weighted_one_everywhere_is_checked_as_the_plain_print():
    track = melody(30.0, seed=1)
    query, line = print_of(track[10 * SR : 20 * SR]), whole(10.0, track_offset_s=10.4)
    plain = verification.check(query, print_of(track), line, **PRINT_CHECK)
    weighted = verification.check(
        verification.Weighted(query, np.ones_like(query)), print_of(track), line, **PRINT_CHECK
    )
    assert weighted.agreement == pytest.approx(plain.agreement, abs=1e-9)
    assert weighted.alignment == plain.alignment


def test_a_copy_weighted_on_its_loudest_cells_agrees_by_one_not_more():
    """An exact copy whose cells far from their band's and frame's means weigh 1 and the rest
    0.01 agrees by 1: the track chunk's energy is taken under the same weights. Read as spread
    evenly over the cells, the copy had agreed by 1.36."""
    track = melody(30.0, seed=1)
    query = print_of(track[10 * SR : 20 * SR])
    spread = np.abs(correlation.centred(correlation.floored(query).astype(np.float64)))
    weights = np.where(spread > np.median(spread), 1.0, 0.01).astype(np.float32)
    line = whole(10.0, track_offset_s=10.0)
    checked = verification.check(
        verification.Weighted(query, weights), print_of(track), line, **PRINT_CHECK
    )
    assert checked.agreement == pytest.approx(1.0, abs=1e-6)


def test_the_cells_another_sound_covers_weighted_out_a_copy_agrees_and_other_music_does_not():
    """A copy under another melody as loud (a voice over the music): the cells where the other
    melody is the louder weighted 0, the copy agrees far better than read whole, and other
    music read on the same weights stays at chance."""

    def agreement(query, track_print):
        at_5s = whole(10.0, track_offset_s=5.0)
        return verification.check(query, track_print, at_5s, **PRINT_CHECK).agreement

    gains = []
    for seed in range(3):
        track, over, other = (melody(30.0, seed=30 + 3 * seed + k) for k in range(3))
        clip, top = track[5 * SR : 15 * SR], over[: 10 * SR]
        mixed = print_of(clip + top * np.sqrt(np.mean(clip**2) / np.mean(top**2)))
        weights = (print_of(clip) >= print_of(top)).astype(np.float32)
        track_print = print_of(track)
        plain = agreement(mixed, track_print)
        weighted = agreement(verification.Weighted(mixed, weights), track_print)
        alien = agreement(
            verification.Weighted(print_of(other[5 * SR : 15 * SR]), weights), track_print
        )
        gains.append(weighted - plain)
        assert weighted > 0.75
        assert alien < 0.3
    assert min(gains) > 0.08 and np.mean(gains) > 0.12
