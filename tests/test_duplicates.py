"""Near-duplicate matching (duplicates.py, and the readings of readings.py) on synthetic window
tracks, and on real music with the shipped model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import SR, print_of, walk, windows_at

from mirsearch import duplicates, fingerprint, lines, verification
from mirsearch.audio import load
from mirsearch.config import DuplicateConfig, FeatureConfig
from mirsearch.duplicates import (
    Reading,
    best_of,
    candidates,
    find_matches,
    strongest,
    verified_best,
)
from mirsearch.index import VectorIndex
from mirsearch.index_kinds import normalise
from mirsearch.index_meta import IndexMeta
from mirsearch.readings import read_as_needed, read_under_talk
from mirsearch.scoring import Match, less_sure, ranked
from mirsearch.transforms import speed

DIM, HOP_S, QUERY_HOP_S = 32, 1.5, 0.5
CONFIG = DuplicateConfig()
SHIFTED = [st for st in sorted(CONFIG.pitch_hypotheses_st) if st != 0.0]  # read when in doubt
KEYS = list(CONFIG.key_readings_st)  # read when no reading confirms a track
READ_ST = (*CONFIG.pitch_hypotheses_st, *KEYS)
THRESHOLD = 0.75  # true excerpts score about 1; chance alignments of random walks below 0.01
PRINT_FPS = fingerprint.print_frames_per_s(FeatureConfig())
PRINT_BANDS = 44


@pytest.fixture(scope="module")
def walks():
    """(index, windows of each track, print of each track): random walks and random prints."""
    rng = np.random.default_rng(0)
    tracks = {t: walk(rng, 80, dim=DIM) for t in range(1, 21)}
    n_frames = int((80 * HOP_S + 3.0) * PRINT_FPS)
    prints = {t: rng.integers(0, 120, (PRINT_BANDS, n_frames), dtype=np.uint8) for t in tracks}
    index = VectorIndex.create(
        IndexMeta.for_model(dim=DIM, model_hash="x", feature_config={}, hop_s=HOP_S)
    )
    for track_id, windows in tracks.items():
        index.add(track_id, windows, windows.mean(0) / np.linalg.norm(windows.mean(0)))
    return index, tracks, prints


def lookup(prints):
    return lambda ids: {t: prints[t] for t in ids if t in prints}


def excerpt(windows, track_print, start_s: float, seconds: float, *, speed: float = 1.0):
    """Query windows (every QUERY_HOP_S) and print of an excerpt played `speed` times as fast."""
    query_times = np.arange(0, seconds - 3.0 + 1e-9, QUERY_HOP_S)
    frames = np.round((start_s + speed * np.arange(0, seconds, 1 / PRINT_FPS)) * PRINT_FPS)
    query_print = track_print[:, frames.astype(int)]
    return windows_at(windows, start_s + speed * query_times, hop_s=HOP_S), query_times, query_print


def test_excerpt_is_found_with_its_offsets(walks):
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    matches = find_matches(
        index, vectors, times, query_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
    )
    assert [m.track_id for m in matches] == [7]
    assert matches[0].track_offset_s == pytest.approx(30.0, abs=HOP_S)
    assert matches[0].query_offset_s == pytest.approx(0.0, abs=QUERY_HOP_S)
    assert matches[0].duration_s == pytest.approx(10.0, abs=1.0)
    assert matches[0].agreement > 0.9


@pytest.mark.parametrize("start_s", [0.35, 30.4, 30.75, 61.1])
def test_an_excerpt_off_the_catalog_grid_is_placed_within_half_a_second(walks, start_s):
    """Catalog windows are 1.5 s apart; the agreeing windows place the excerpt closer than that."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[5], prints[5], start_s, 8.0)
    match = find_matches(
        index, vectors, times, query_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
    )[0]
    assert match.track_id == 5
    began_s = match.track_offset_s - match.query_offset_s * match.speed
    assert began_s == pytest.approx(start_s, abs=0.5)


def test_windows_that_align_but_prints_that_do_not_are_no_duplicate(walks):
    """Music that sounds alike window by window (same vectors) but is other audio (other print)."""
    index, tracks, prints = walks
    vectors, times, _ = excerpt(tracks[7], prints[7], 30.0, 10.0)
    _, _, other_print = excerpt(tracks[8], prints[8], 30.0, 10.0)
    found = find_matches(
        index, vectors, times, other_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
    )
    assert found == []


def test_a_track_without_a_print_is_scored_on_its_windows_alone(walks):
    """A catalog track whose print is missing agrees at 0: its windows' evidence alone stays
    under the threshold, and the line the windows drew is kept as it was."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    without_7 = {t: p for t, p in prints.items() if t != 7}
    found = candidates(
        index, [Reading(vectors, times, query_print)], lookup(without_7), config=CONFIG
    )
    seven = next(m for m in found if m.track_id == 7)
    assert seven.agreement == 0.0
    assert seven.score < THRESHOLD
    assert seven.track_offset_s == pytest.approx(30.0, abs=HOP_S)
    assert (
        find_matches(
            index,
            vectors,
            times,
            query_print,
            lookup(without_7),
            config=CONFIG,
            threshold=THRESHOLD,
        )
        == []
    )


def test_sped_up_excerpt_is_found_with_its_speed(walks):
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[3], prints[3], 10.0, 60.0, speed=1.05)
    match = find_matches(
        index, vectors, times, query_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
    )[0]
    assert match.track_id == 3
    assert match.speed == pytest.approx(1.05, abs=0.025)  # catalog windows are 1.5 s apart


def test_random_query_matches_nothing(walks):
    index, _, prints = walks
    rng = np.random.default_rng(99)
    vectors = walk(rng, 30, dim=DIM)
    query_print = rng.integers(0, 120, (PRINT_BANDS, 20 * int(PRINT_FPS)), dtype=np.uint8)
    times = np.arange(30) * QUERY_HOP_S
    assert (
        find_matches(
            index, vectors, times, query_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
        )
        == []
    )


def test_two_excerpts_back_to_back_give_both(walks):
    index, tracks, prints = walks
    a, ta, pa = excerpt(tracks[4], prints[4], 20.0, 12.0)
    b, tb, pb = excerpt(tracks[9], prints[9], 50.0, 12.0)
    vectors = np.concatenate([a, b])
    times = np.concatenate([ta, ta[-1] + QUERY_HOP_S + tb])
    query_print = np.concatenate([pa[:, : int((ta[-1] + QUERY_HOP_S) * PRINT_FPS)], pb], axis=1)
    matches = find_matches(
        index, vectors, times, query_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
    )
    assert {m.track_id for m in matches} == {4, 9}
    later = next(m for m in matches if m.track_id == 9)
    assert later.query_offset_s == pytest.approx(ta[-1] + QUERY_HOP_S, abs=1.0)


def test_a_long_upload_of_many_excerpts_lists_them_all(walks):
    """More catalog tracks than one minute's checks allow (CONFIG.verify_tracks), back to back
    in a two-minute upload: each minute brings its own checks."""
    index, tracks, prints = walks
    n = CONFIG.verify_tracks + 4
    parts = [excerpt(tracks[t], prints[t], 10.0 + 2 * t, 10.0) for t in range(1, n + 1)]
    vectors = np.concatenate([v for v, _, _ in parts])
    times = np.concatenate([10.0 * i + t for i, (_, t, _) in enumerate(parts)])
    query_print = np.concatenate([p for _, _, p in parts], axis=1)
    assert 60 < query_print.shape[1] / PRINT_FPS <= 120
    matches = find_matches(
        index, vectors, times, query_print, lookup(prints), config=CONFIG, threshold=THRESHOLD
    )
    assert {m.track_id for m in matches} == set(range(1, n + 1))


def test_each_reading_line_of_a_checked_track_is_verified_and_the_best_kept(walks):
    """A pitch hypothesis whose windows line up but whose print does not agree (here: another
    track's) must not hide the reading whose print does."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    wrong_print = prints[3][:, : query_print.shape[1]]
    asked = []

    def counting(ids):
        asked.append(sorted(ids))
        return lookup(prints)(ids)

    def found(*query_prints):
        readings = [Reading(vectors, times, p) for p in query_prints]
        return {m.track_id: m for m in candidates(index, readings, counting, config=CONFIG)}

    assert found(wrong_print)[7].score < THRESHOLD
    best = found(wrong_print, query_print)[7]
    assert best.score >= THRESHOLD and best.agreement == found(query_print)[7].agreement
    assert all(len(ids) == len(set(ids)) <= CONFIG.verify_tracks for ids in asked)  # one lookup


def test_lines_less_alike_than_the_floor_are_left_unchecked_and_no_track_checked_instead(walks):
    """Three tracks' excerpts back to back, their windows made less alike in turn (lines of
    similarity ~0.96, 0.79, 0.72): with `min_similarity` (a far reading's floor) the lines under
    it are not checked on the prints, and with room to check two tracks the third is not checked
    in the place of the one left out."""
    index, tracks, prints = walks
    rng = np.random.default_rng(5)
    times = np.arange(0, 7.0 + 1e-9, QUERY_HOP_S)
    parts = []
    for track_id, sigma in ((3, 0.3), (5, 0.8), (9, 1.1)):
        v = windows_at(tracks[track_id], 30.0 + times, hop_s=HOP_S)
        parts.append(
            normalise(v + sigma * rng.standard_normal(v.shape).astype(np.float32) / DIM**0.5)
        )
    vectors = np.concatenate(parts)
    offsets = np.arange(len(vectors)) * QUERY_HOP_S
    reading = Reading(vectors, offsets, prints[3][:, : int(offsets[-1] + 3.0) * int(PRINT_FPS)])
    alike = {
        ln.track_id: ln.similarity
        for ln in lines.vote(index, vectors, offsets, config=CONFIG, exclude=frozenset())
    }
    assert alike[3] > 0.9 > alike[5] > alike[9] > 0.6
    two = dataclasses.replace(CONFIG, verify_tracks=2)

    def checked(floor: float, config=CONFIG) -> set[int]:
        asked: list[int] = []

        def counting(ids):
            asked.extend(ids)
            return lookup(prints)(ids)

        found = candidates(index, [reading], counting, config=config, min_similarity=floor)
        assert {m.track_id for m in found} == set(asked)
        return set(asked)

    assert checked(0.0) == {3, 5, 9}
    assert checked(0.9) == {3}
    assert checked(0.0, two) == {3, 5}
    assert checked(0.75, two) == {3, 5}
    assert checked(0.9, two) == {3}


class Reader:
    """A query's readings by pitch hypothesis (semitones → print), and the hypotheses asked for."""

    def __init__(self, vectors, times, prints_by_st):
        self.vectors, self.times, self.prints_by_st = vectors, times, prints_by_st
        self.asked: list[list[float]] = []

    def __call__(self, semitones):
        self.asked.append(list(semitones))
        return [Reading(self.vectors, self.times, self.prints_by_st[st]) for st in semitones]


def never_read():
    """`read_repeating` of a query that must not be read for music under talk."""
    raise AssertionError("read for music under talk")


def test_a_query_confirmed_as_it_plays_is_not_read_at_the_other_pitches(walks):
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    read = Reader(vectors, times, {0.0: query_print})

    found = read_as_needed(
        index,
        read,
        lookup(prints),
        threshold=THRESHOLD,
        read_repeating=never_read,
        config=CONFIG,
    )
    assert read.asked == [[0.0]]
    assert found[0].track_id == 7 and found[0].agreement >= CONFIG.settle_agreement


def test_a_query_confirmed_as_it_plays_is_read_at_the_other_pitches_for_a_version_unconfirmed(
    walks,
):
    """The catalog says track 7 has another version, track 3 (indexing found 3 a near-duplicate
    of 7, say 5 % faster, so 0.85 semitones higher): a reading that confirms 7 but not 3 is not
    the answer; one whose confirmed tracks include every version is."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    for versions, readings in (({7: {3}}, [[0.0], SHIFTED]), ({7: {7}}, [[0.0]])):
        read = Reader(vectors, times, dict.fromkeys(READ_ST, query_print))
        asked = []

        def versions_of(ids, versions=versions, asked=asked):
            asked.append(list(ids))
            return set().union(*(versions.get(t, set()) for t in ids))

        read_as_needed(
            index, read, lookup(prints), threshold=THRESHOLD, versions=versions_of, config=CONFIG
        )
        assert asked == [[7]]
        assert read.asked == readings


def test_a_track_listed_on_a_weak_agreement_sends_the_query_to_the_other_pitches(
    walks, monkeypatch
):
    """Beside the track it confirms, the reading as it plays lists another on prints agreeing
    under config.settle_agreement (a pitch-shifted copy's like-sounding phrase a semitone up,
    140 s from the passage): the other pitches are read, as their reading places that copy."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    weak = Match(3, 0.91, 2.0, 190.0, 5.0, 1.0, windows=5, similarity=0.82, agreement=0.47)
    for extra, readings in (([weak], [[0.0], SHIFTED]), ([], [[0.0]])):
        read = Reader(vectors, times, dict.fromkeys(READ_ST, query_print))
        calls = []

        def first_lists(*args, extra=extra, calls=calls, **options):
            calls.append(1)
            found = verified_best(*args, **options)
            return found + extra if len(calls) == 1 else found

        monkeypatch.setattr(duplicates, "verified_best", first_lists)
        read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=CONFIG)
        assert read.asked == readings


def test_a_query_in_doubt_is_read_at_every_pitch_and_found_as_if_read_at_once(walks, monkeypatch):
    """As it plays, the excerpt's print is another track's (as a pitch-shifted upload's print
    agrees with nothing unshifted); the hypothesis a semitone up holds the right one. The result
    is that of every reading at once, and the first reading's checks are not made again."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    wrong_print = prints[3][:, : query_print.shape[1]]
    by_st = {st: wrong_print.copy() for st in CONFIG.pitch_hypotheses_st} | {1.0: query_print}
    read = Reader(vectors, times, by_st)
    checks = []

    def counted(items, **options):
        checks.extend((id(query), alignment) for query, _, alignment in items)
        return check(items, **options)

    check = verification.checks
    monkeypatch.setattr(verification, "checks", counted)
    found = read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=CONFIG)
    assert read.asked == [[0.0], SHIFTED]
    assert len(checks) == len(set(checks)) > 0  # no line of a reading checked twice
    at_once = candidates(index, read(sorted(by_st)), lookup(prints), config=CONFIG)
    assert found == at_once
    assert found[0].track_id == 7 and found[0].score >= THRESHOLD


def test_a_query_no_pitch_hypothesis_confirms_is_read_further_in_key_and_scored_less_sure(walks):
    """Only the reading three semitones up holds the excerpt's print (a copy moved in key past
    the hypotheses' reach): no pitch hypothesis confirms a track, so the query is read at
    config.key_readings_st too, and track 7 is found there, scored config.far_reading_logits
    less sure than the same reading would be among the hypotheses (less sure by 40 logits, it
    is not listed; nor where its windows are less alike than config.far_min_similarity)."""
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    wrong_print = prints[3][:, : query_print.shape[1]]
    by_st = {st: wrong_print.copy() for st in READ_ST} | {3.0: query_print}
    read = Reader(vectors, times, by_st)
    found = read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=CONFIG)
    assert read.asked == [[0.0], SHIFTED, KEYS]
    in_key = candidates(index, read([3.0]), lookup(prints), config=CONFIG)[0]
    assert found[0].track_id == in_key.track_id == 7
    assert found[0].agreement == in_key.agreement > 0.9
    assert found[0].score == less_sure(in_key, CONFIG.far_reading_logits, CONFIG).score >= THRESHOLD
    doubtful = dataclasses.replace(CONFIG, far_reading_logits=40.0)
    found = read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=doubtful)
    assert [m for m in found if m.score >= THRESHOLD] == []
    unchecked = dataclasses.replace(CONFIG, far_min_similarity=in_key.similarity + 0.01)
    found = read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=unchecked)
    assert [m for m in found if m.score >= THRESHOLD] == []  # its line under the floor


def test_a_query_of_no_catalog_track_is_read_at_every_pitch_and_matches_nothing(walks):
    index, _, prints = walks
    rng = np.random.default_rng(99)
    vectors, times = walk(rng, 30, dim=DIM), np.arange(30) * QUERY_HOP_S
    noise = rng.integers(0, 120, (PRINT_BANDS, 20 * int(PRINT_FPS)), dtype=np.uint8)
    read = Reader(vectors, times, dict.fromkeys(READ_ST, noise))
    found = read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=CONFIG)
    assert read.asked == [[0.0], SHIFTED, KEYS]
    assert [m for m in found if m.score >= THRESHOLD] == []


class BroughtBack:
    """`read_at` of 8 s of a track from 30 s played `played` times as fast: brought back from a
    speed, it plays the track played / speed times as fast. Keeps the speeds asked."""

    def __init__(self, windows, track_print, played: float):
        self.windows, self.track_print, self.played = windows, track_print, played
        self.asked: list[float] = []

    def __call__(self, speed):
        self.asked.append(speed)
        back = excerpt(self.windows, self.track_print, 30.0, 8.0 * speed, speed=self.played / speed)
        return [Reading(*back)], speed


def test_a_query_no_reading_lists_is_brought_back_from_each_speed_and_told_in_its_own_time(
    walks,
):
    """8 s of track 7 from 30 s played 1.25 times as fast (a "nightcore" copy): no pitch
    reading lines it up (their windows vote over speeds to 1.12), so it is brought back from
    each of config.speed_readings; brought back from 1.19 it plays the track ~5 % fast and is
    found there. The match is told in the upload's time: from its start, for its 8 s, at 1.25."""
    index, tracks, prints = walks
    played = 1.25
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 8.0, speed=played)
    read = Reader(vectors, times, dict.fromkeys(READ_ST, query_print))
    read_at = BroughtBack(tracks[7], prints[7], played)

    found = read_as_needed(
        index,
        read,
        lookup(prints),
        threshold=THRESHOLD,
        read_at=read_at,
        read_repeating=never_read,  # confirmed in a far reading
        config=CONFIG,
    )
    assert read.asked == [[0.0], SHIFTED, KEYS] and read_at.asked == list(CONFIG.speed_readings)
    best = found[0]
    assert best.track_id == 7 and best.score >= THRESHOLD
    assert best.speed == pytest.approx(played, abs=0.02)
    assert best.query_offset_s == pytest.approx(0.0, abs=QUERY_HOP_S)
    assert best.duration_s == pytest.approx(8.0, abs=1.0)
    assert best.track_offset_s == pytest.approx(30.0, abs=HOP_S)
    assert (
        read_as_needed(index, read, lookup(prints), threshold=THRESHOLD, config=CONFIG)[0].score
        < THRESHOLD
    )


def test_a_query_a_reading_lists_a_track_in_is_not_brought_back_from_other_speeds(walks):
    index, tracks, prints = walks
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    read = Reader(vectors, times, dict.fromkeys(READ_ST, query_print))

    def read_at(speed):
        raise AssertionError(f"read at {speed}")

    found = read_as_needed(
        index, read, lookup(prints), threshold=THRESHOLD, read_at=read_at, config=CONFIG
    )
    assert found[0].track_id == 7 and found[0].score >= THRESHOLD


def test_a_track_listed_on_weakly_agreeing_prints_sends_the_query_to_the_other_speeds(
    walks, monkeypatch
):
    """The pitch readings list track 7 at speed 1.0 on prints agreeing by 0.36 (real music 15 %
    fast had been listed so); brought back from 1.19, the upload lines up with it on prints
    agreeing well: that alignment is the one kept, at its speed. A track listed on agreeing
    prints (above) is not read again."""
    index, tracks, prints = walks
    played = 1.25
    weak = Match(7, 0.89, 0.0, 30.0, 8.0, 1.0, windows=15, similarity=0.78, agreement=0.36)
    monkeypatch.setattr("mirsearch.readings.read_pitches", lambda *args, **options: [weak])
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 8.0, speed=played)
    read = Reader(vectors, times, dict.fromkeys(READ_ST, query_print))
    read_at = BroughtBack(tracks[7], prints[7], played)
    found = read_as_needed(
        index, read, lookup(prints), threshold=THRESHOLD, read_at=read_at, config=CONFIG
    )
    assert read_at.asked == list(CONFIG.speed_readings)
    assert found[0].track_id == 7 and found[0].speed == pytest.approx(played, abs=0.02)
    assert found[0].agreement > 0.7


def talked_over(walks, *, smear_s: float = 2.5):
    """10 s of track 7 from 30 s under talk, as `match` reads it: as it plays, the voice's
    windows (a walk of no track) and a print whose cells are two in three the voice's (random
    values); its repeating part, the track's windows on a line `smear_s` late (what repeats is
    smoothed over seconds), blurred (cosine ~0.8), and the same print weighted 0 where the
    voice covers it."""
    index, tracks, prints = walks
    rng = np.random.default_rng(5)
    vectors, times, query_print = excerpt(tracks[7], prints[7], 30.0, 10.0)
    covered = rng.random(query_print.shape) < 2 / 3
    talk = rng.integers(0, 120, query_print.shape, dtype=np.uint8)
    mixed = np.where(covered, talk, query_print)
    read = Reader(walk(rng, len(times), dim=DIM), times, dict.fromkeys(READ_ST, mixed))
    smeared = windows_at(tracks[7], 30.0 + smear_s + times, hop_s=HOP_S)
    smeared = normalise(smeared + 0.8 / DIM**0.5 * rng.standard_normal(smeared.shape))
    repeating = Reading(smeared, times, mixed, np.where(covered, 0.0, 1.0).astype(np.float32))
    return read, repeating


def test_music_under_talk_is_found_in_its_repeating_part_on_the_cells_the_voice_leaves(walks):
    """No reading of the upload as it plays lists track 7: its windows are the voice's. Its
    repeating part's windows find the track on a line 2.5 s late, and the prints, weighted to
    the cells the voice leaves and free to shift config.under_talk_max_lag_s, put it back at
    30 s, scored config.under_talk_logits less sure. Read as it came (every cell counting), or
    with the usual lag, the same reading does not list it."""
    index, _, prints = walks
    read, repeating = talked_over(walks)
    asked = []

    def read_repeating():
        asked.append(True)
        return repeating

    found = read_as_needed(
        index,
        read,
        lookup(prints),
        threshold=THRESHOLD,
        read_repeating=read_repeating,
        config=CONFIG,
    )
    assert read.asked == [[0.0], SHIFTED, KEYS] and asked == [True]
    best = found[0]
    assert best.track_id == 7 and best.score >= THRESHOLD
    assert best.track_offset_s == pytest.approx(30.0, abs=1 / PRINT_FPS)
    assert best.agreement > 0.8
    unweighted = dataclasses.replace(repeating, weights=None)
    narrow = dataclasses.replace(CONFIG, under_talk_max_lag_s=CONFIG.verify_max_lag_s)
    doubted = dataclasses.replace(CONFIG, under_talk_logits=40.0)  # the score's own logit
    for reading, config in ((unweighted, CONFIG), (repeating, narrow), (repeating, doubted)):
        found = read_under_talk(index, reading, lookup(prints), config=config)
        assert [m for m in found if m.score >= THRESHOLD] == []


def line(track_id: int, similarity: float) -> lines.Line:
    return lines.Line(track_id, 0.0, 0.0, 5.0, 1.0, windows=5, similarity=similarity)


def test_the_tracks_of_most_window_evidence_are_checked_more_for_longer_queries():
    n = CONFIG.verify_tracks
    first = [line(t, 0.5 + 0.01 * t) for t in range(1, 40)]  # track 39 the strongest here
    second = [line(100, 0.99), line(1, 0.95)]  # strongest in another pitch hypothesis only
    chosen = strongest([first, second], 10.0, CONFIG)
    assert chosen == {100, 1, *range(39, 39 - (n - 2), -1)}
    assert len(strongest([first, second], 61.0, CONFIG)) == 2 * n
    assert strongest([[], []], 10.0, CONFIG) == set()


def test_versions_of_a_clip_are_listed_at_their_speeds_and_the_exact_copy_first(shared_audio):
    """Real music: a track's copies 5 % fast (track 1) and 5 % slow (track 2), a clip of the fast
    one whose windows lined both up at speed 1.0. The clip's own track is listed first at 1.0
    where the clip was cut, the other copy at 1.05/0.95 where it plays there (its line had
    been kept at 1.000, half a second off: too little agreement along it to list it from this
    reading, listed at score 1.0 from the reading a semitone up)."""
    x = load(shared_audio / "xmoto__batcave.mp3").samples[: 90 * SR]
    fast, slow = (speed(x, SR, factor=f)[0] for f in (1.05, 0.95))
    windows = [
        lines.Line(1, 0.0, 50.25, 10.0, 1.0, windows=15, similarity=0.95),
        lines.Line(2, 0.0, 55.75, 10.0, 1.0, windows=15, similarity=0.88),
    ]
    found = verified_best(
        [windows],
        [print_of(fast[50 * SR : 60 * SR])],
        {1, 2},
        {1: print_of(fast), 2: print_of(slow)},
        PRINT_FPS,
        CONFIG,
    )
    exact, other = ranked([m for m in found if m.score >= THRESHOLD])
    assert (exact.track_id, other.track_id) == (1, 2)
    assert exact.speed == pytest.approx(1.0, abs=0.005)
    assert exact.track_offset_s == pytest.approx(50.0, abs=0.1)
    assert other.speed == pytest.approx(1.05 / 0.95, rel=0.01)
    assert other.track_offset_s == pytest.approx(50 * 1.05 / 0.95, abs=0.1)


def test_an_excerpt_inside_a_longer_upload_is_listed_where_it_plays(shared_audio):
    """Real music: a sample-exact 25 s excerpt (from 20 s) of a track, indexed, and an upload of
    the track's first minute, whose windows lined the excerpt up from 18.5 s at 0.94. It is
    listed from 20 s of the upload for 25 s at speed 1.0 (it had been 18.5 s, 26.6 s, 0.94: the
    duplicates page then said the exact copy 'plays 5.3 % faster')."""
    x = load(shared_audio / "xmoto__batcave.mp3").samples[: 60 * SR]
    windows = lines.Line(1, 18.5, 0.0, 27.0, 0.94, windows=49, similarity=0.94)
    (match,) = verified_best(
        [[windows]], [print_of(x)], {1}, {1: print_of(x[20 * SR : 45 * SR])}, PRINT_FPS, CONFIG
    )
    assert match.score >= THRESHOLD
    assert match.speed == pytest.approx(1.0, abs=0.005)
    assert match.query_offset_s == pytest.approx(20.0, abs=0.1)
    assert match.duration_s == pytest.approx(25.0, abs=0.1)
    assert match.track_offset_s == pytest.approx(0.0, abs=0.1)


def test_a_tracks_best_reading_at_equal_score_is_the_one_whose_prints_agree_best():
    """Two readings of one track (its pitch or speed hypotheses) both saturate the score: the
    one kept, with its speed and offsets, is the one the prints agree with, not the one with the
    likelier windows, whatever the order the readings come in."""
    windows_liked = Match(4, 1.0, 0.0, 30.0, 10.0, 1.0, windows=20, similarity=0.95, agreement=0.5)
    prints_agree = dataclasses.replace(windows_liked, speed=1.05, similarity=0.9, agreement=0.8)
    other = Match(2, 0.97, 0.0, 3.0, 10.0, 1.0, windows=12, similarity=0.9, agreement=0.7)
    for order in ([windows_liked, other], [prints_agree]), ([prints_agree], [other, windows_liked]):
        assert best_of(*order) == [prints_agree, other]
