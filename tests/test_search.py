"""Tests for query-by-example ranking on synthetic random-walk "tracks" of window vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import walk, windows_at

from mirsearch.config import IndexConfig, SearchConfig
from mirsearch.index import VectorIndex
from mirsearch.index_kinds import normalise
from mirsearch.index_meta import IndexMeta
from mirsearch.search import Hit, align, rank, similar

DIM, HOP_S, N_TRACKS, N_WINDOWS = 64, 1.5, 50, 100
META = IndexMeta.for_model(dim=DIM, model_hash="walk", feature_config={}, hop_s=HOP_S)


def random_walk(rng, n: int, *, step: float = 0.35) -> np.ndarray:
    return walk(rng, n, dim=DIM, step=step)


def resample(windows: np.ndarray, start_s: float, n: int, hop_s: float) -> np.ndarray:
    return windows_at(windows, start_s + np.arange(n) * hop_s, hop_s=HOP_S)


def noisy(rng, windows: np.ndarray, level: float) -> np.ndarray:
    """Windows moved by random noise of norm about `level` (a re-encoding, a noisy recording)."""
    return normalise(windows + level / DIM**0.5 * rng.standard_normal(windows.shape))


@pytest.fixture(scope="module", params=["flat", "hnsw"])
def catalog(request):
    """50 random-walk tracks and a relative of track 3, in an exact and in an HNSW index."""
    rng = np.random.default_rng(7)
    tracks = {t: random_walk(rng, N_WINDOWS) for t in range(1, N_TRACKS + 1)}
    # a track like track 3 (its sounds, shuffled and blurred) but no excerpt of it
    tracks[N_TRACKS + 1] = noisy(rng, tracks[3][rng.permutation(N_WINDOWS)[:80]], 0.1)
    index = VectorIndex.create(META, IndexConfig(kind=request.param))
    for track_id, windows in tracks.items():
        index.add(track_id, windows)
    return index, tracks


def test_an_excerpt_finds_its_track_and_position(catalog):
    index, tracks = catalog
    rng = np.random.default_rng(1)
    query = noisy(rng, tracks[7][40:60], 0.5)
    hits = rank(index, query, np.arange(20) * HOP_S, query.mean(axis=0), k=5)
    assert [type(h) for h in hits] == [Hit] * 5
    assert hits[0].track_id == 7 and hits[0].offset_s == pytest.approx(40 * HOP_S, abs=HOP_S)
    assert hits[0].score > hits[1].score + 0.3
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_a_dense_query_between_catalog_windows_lines_up(catalog):
    index, tracks = catalog
    rng = np.random.default_rng(2)
    start_s = 31 * HOP_S + 0.5  # not on the catalog's window grid
    query = noisy(rng, resample(tracks[23], start_s, 40, 0.5), 0.3)
    hits = rank(index, query, np.arange(40) * 0.5, query.mean(axis=0), k=3)
    assert hits[0].track_id == 23
    assert hits[0].offset_s == pytest.approx(start_s, abs=0.25)  # on the query's grid, not 1.5 s
    late = rank(
        index, query, 2.0 + np.arange(40) * 0.5, query.mean(axis=0), k=3
    )  # the clip starts 2 s earlier
    assert late[0].track_id == 23
    assert late[0].offset_s == pytest.approx(start_s - 2.0, abs=0.25)


def test_filtered_search_returns_exactly_k_allowed_tracks(catalog):
    index, tracks = catalog
    rng = np.random.default_rng(3)
    query = noisy(rng, tracks[7][10:30], 0.5)
    allowed = {2, 11, 19, 30, 41, 44, 999}  # 999 is not indexed
    hits = rank(
        index, query, np.arange(20) * HOP_S, query.mean(axis=0), k=4, allowed_tracks=allowed
    )
    assert len(hits) == 4 and {h.track_id for h in hits} <= allowed - {999}
    hits = rank(
        index, query, np.arange(20) * HOP_S, query.mean(axis=0), k=10, allowed_tracks=allowed
    )
    assert sorted(h.track_id for h in hits) == [2, 11, 19, 30, 41, 44]
    assert (
        rank(index, query, np.arange(20) * HOP_S, query.mean(axis=0), k=10, allowed_tracks=set())
        == []
    )


def test_candidates_are_topped_up_when_window_neighbours_run_dry(catalog):
    index, tracks = catalog
    query = tracks[7][10:30]
    config = SearchConfig(rescore_candidates=1, neighbours_per_window=1)
    hits = rank(index, query, np.arange(20) * HOP_S, query.mean(axis=0), k=30, config=config)
    assert len(hits) == 30 and len({h.track_id for h in hits}) == 30 and hits[0].track_id == 7
    assert len(rank(index, query, np.arange(20) * HOP_S, query.mean(axis=0), k=500)) == N_TRACKS + 1


def test_similar_excludes_the_track_and_finds_its_relative(catalog):
    index, _ = catalog
    hits = similar(index, 3, k=5)
    assert len(hits) == 5 and 3 not in {h.track_id for h in hits}
    assert hits[0].track_id == N_TRACKS + 1
    filtered = similar(index, 3, k=5, allowed_tracks={3, 8, 9})
    assert sorted(h.track_id for h in filtered) == [8, 9]


def test_similar_leaves_out_the_windows_of_a_long_pause():
    """A hidden track's minute of silence made every track with a silence alike."""
    rng = np.random.default_rng(3)
    music, unrelated = random_walk(rng, 30), random_walk(rng, 30)
    pause = normalise(rng.standard_normal((1, DIM)) + 0.01 * rng.standard_normal((60, DIM)))
    index = VectorIndex.create(META, IndexConfig(kind="flat"))
    index.add(1, np.vstack([music, pause]), music.mean(axis=0))
    index.add(2, np.vstack([unrelated, pause]), unrelated.mean(axis=0))
    index.add(3, noisy(rng, music, 0.3))  # the same music, without the pause
    for track_id in range(4, 10):
        index.add(track_id, random_walk(rng, 30))
    sounding = np.r_[np.ones(30, bool), np.zeros(60, bool)]
    before = {h.track_id: h.score for h in similar(index, 1, k=8)}
    after = {h.track_id: h.score for h in similar(index, 1, k=8, sounding=sounding)}
    assert before[2] > 0.6 and after[2] < 0.2  # the pause no longer counts
    assert max(after, key=after.get) == 3
    assert similar(index, 1, k=8, sounding=sounding[:10]) == similar(index, 1, k=8)  # not its own
    silent = np.zeros(90, bool)  # no window of sound: every window read, as a clip's are
    assert similar(index, 1, k=8, sounding=silent) == similar(index, 1, k=8)


def test_a_one_window_query_lines_up_at_zero_not_minus_zero():
    track = random_walk(np.random.default_rng(5), 10)
    offset_s = align(track[:1], np.zeros(1), track, hop_s=HOP_S).offset_s
    assert offset_s == 0.0 and math.copysign(1.0, offset_s) == 1.0  # JSON said "offset_s": -0.0


def test_tracks_of_one_score_are_ranked_by_id():
    """Two tracks of the same windows (a file indexed twice under two names): the same query
    answers them in the same order every time, the lower id first."""
    rng = np.random.default_rng(6)
    index = VectorIndex.create(META, IndexConfig(kind="flat"))
    twin = random_walk(rng, 40)
    for track_id in (9, 4):
        index.add(track_id, twin)
    for track_id in range(10, 16):
        index.add(track_id, random_walk(rng, 40))
    hits = rank(index, twin[5:15], np.arange(10) * HOP_S, twin.mean(axis=0), k=3)
    assert [h.track_id for h in hits[:2]] == [4, 9] and hits[0].score == hits[1].score


def test_query_windows_in_any_order_line_up_as_in_time_order():
    """The windows of a query read at several pitches or speeds come in groups, not in time
    order: aligned, they are put back in it."""
    rng = np.random.default_rng(8)
    track, other = random_walk(rng, 60), random_walk(rng, 60)
    query, offsets_s = np.vstack([other[:20], track[10:30]]), np.arange(40) * HOP_S
    order = rng.permutation(40)
    assert align(query[order], offsets_s[order], track, hop_s=HOP_S) == align(
        query, offsets_s, track, hop_s=HOP_S
    )


def test_a_query_that_begins_before_the_track_is_lined_up_from_where_the_track_begins():
    """3 s of something else, then the track from its first window: the part of the query
    lined up begins 3 s in, at the track's start (not at the query's: the track has nothing
    there to play)."""
    rng = np.random.default_rng(9)
    track, other = random_walk(rng, 30), random_walk(rng, 30)
    query = np.vstack([other[:2], track[:8]])
    match = align(query, np.arange(10) * HOP_S, track, hop_s=HOP_S)
    assert match.offset_s == 0.0 and match.starts_s == (3.0, 0.0)


def test_align_prefers_the_consistent_offset_over_scattered_matches():
    rng = np.random.default_rng(4)
    track = random_walk(rng, 60)
    query = track[20:30]
    shuffled = track[rng.permutation(60)]  # the same windows, in a different order
    in_order = align(query, np.arange(10) * HOP_S, track, hop_s=HOP_S)
    scrambled = align(query, np.arange(10) * HOP_S, shuffled, hop_s=HOP_S)
    assert in_order.mean_of_max == pytest.approx(scrambled.mean_of_max, abs=1e-5)
    assert in_order.aligned == pytest.approx(1.0, abs=1e-5) and in_order.offset_s == 30.0
    assert scrambled.aligned < 0.7


def test_an_upload_holding_two_catalog_excerpts_finds_both_first():
    """Two songs back to back: each track lines up with half the upload, and the mean over all
    its windows had scored each at half that, below a track that matches no part of it but
    whose "sounds alike" vector is close to the upload's."""
    rng = np.random.default_rng(11)
    index = VectorIndex.create(META, IndexConfig(kind="flat"))
    tracks = {t: random_walk(rng, N_WINDOWS) for t in range(1, 21)}
    style = normalise(rng.standard_normal((1, DIM)))[0]  # the upload's "sounds alike" vector
    for track_id, windows in tracks.items():
        index.add(track_id, windows)
    lookalike = normalise(style + 0.9 * normalise(rng.standard_normal((1, DIM)))[0])[0]
    index.add(21, random_walk(rng, N_WINDOWS), lookalike)  # style cosine ~0.74, no excerpt
    first, second = noisy(rng, tracks[1][30:50], 0.3), noisy(rng, tracks[2][60:80], 0.3)
    upload = np.vstack([first, second])  # track 1 from 45 s, then track 2 from 90 s
    hits = rank(index, upload, np.arange(40) * HOP_S, style, k=3)
    assert {h.track_id for h in hits[:2]} == {1, 2} and hits[2].track_id == 21
    assert hits[1].score > hits[2].score + 0.1
    offsets = {h.track_id: h.offset_s for h in hits[:2]}
    # the track time where the upload's time 0 lines up: track 2's part starts 30 s into it
    assert offsets == {1: pytest.approx(45.0, abs=0.5), 2: pytest.approx(60.0, abs=0.5)}
    # and where each one's part begins, in the upload and in its track (to play it from), to a
    # window of the 1.5 s hop or so: a stretch may take in a window or two beside it
    starts = {h.track_id: (h.query_offset_s, h.track_offset_s) for h in hits[:2]}
    assert starts[1][0] == 0.0 and starts[2][0] == pytest.approx(30.0, abs=1.5)
    assert starts[1][1] - starts[1][0] == pytest.approx(45.0, abs=0.5)
    assert starts[2][1] - starts[2][0] == pytest.approx(60.0, abs=0.5)


def test_align_scores_a_long_query_s_best_run_where_it_lines_up_as_a_copy():
    rng = np.random.default_rng(12)
    track, other = random_walk(rng, 60), random_walk(rng, 60)
    query = np.vstack([other[:20], track[10:30]])  # 30 s of other music, then the track from 15 s
    offsets_s = np.arange(40) * HOP_S
    match = align(query, offsets_s, track, hop_s=HOP_S)
    assert match.aligned < 0.6  # half the windows line up
    assert match.excerpt == pytest.approx(1.0, abs=1e-5)
    assert match.excerpt_offset_s == 0.0  # query time 0 lies 15 s before the track starts
    start_s, track_s = match.excerpt_starts_s  # where the part lined up begins: 30 s = 15 s
    assert start_s == pytest.approx(30.0, abs=1.5) and track_s - start_s == pytest.approx(-15.0)
    late = np.vstack([other[40:], track])  # the same track behind 30 s of something else
    assert align(query, offsets_s, late, hop_s=HOP_S).excerpt_offset_s == pytest.approx(15.0)
    short = align(query[:15], offsets_s[:15], track, hop_s=HOP_S)  # a 10 s clip: as before
    assert short.excerpt == short.aligned and short.excerpt_offset_s == short.offset_s
    assert short.starts_s == short.excerpt_starts_s == (0.0, short.offset_s)
    # no run of windows could line up as a copy does (their best matches anywhere cannot): the
    # runs are not scored
    unrelated = align(query, offsets_s, random_walk(rng, 60), hop_s=HOP_S)
    assert unrelated.excerpt == unrelated.aligned


def test_a_long_query_is_thinned_evenly_to_the_windows_searched(catalog, monkeypatch):
    """A query past `max_query_windows` windows searches that many, spread over all of it (a
    long upload's cost is bounded), and still finds its track and where it starts."""
    index, tracks = catalog
    searched = []
    search_windows = index.search_windows

    def spy(queries, *args, **kwargs):
        searched.append(queries)
        return search_windows(queries, *args, **kwargs)

    monkeypatch.setattr(index, "search_windows", spy)
    query = noisy(np.random.default_rng(3), tracks[9][10:90], 0.3)
    config = SearchConfig(max_query_windows=20)
    hits = rank(index, query, np.arange(80) * HOP_S, query.mean(axis=0), k=3, config=config)
    assert [len(q) for q in searched] == [20]
    assert np.allclose(searched[0][[0, -1]], normalise(query)[[0, -1]])  # first and last kept
    assert hits[0].track_id == 9 and hits[0].offset_s == pytest.approx(10 * HOP_S, abs=HOP_S)


def test_a_track_holding_the_querys_windows_in_another_order_ranks_above_a_weak_copy():
    """The windows' evidence is half the best offset's mean, half each query window's best match
    anywhere: a remix holding the clip's passages in reverse order (each window found, few lined
    up) ranks above a track lined up with the clip but like each window at a cosine of ~0.44,
    their "sounds alike" vectors being the same."""
    rng = np.random.default_rng(12)
    query = normalise(rng.standard_normal((10, DIM)))
    remix = np.vstack([random_walk(rng, 20), query[::-1], random_walk(rng, 20)])
    weak = normalise(query + 2.0 * normalise(rng.standard_normal(query.shape)))
    index = VectorIndex.create(META, IndexConfig(kind="flat"))
    style = normalise(rng.standard_normal((1, DIM)))[0]
    index.add(1, remix, track_vector=style)
    index.add(2, np.vstack([random_walk(rng, 20), weak, random_walk(rng, 20)]), track_vector=style)
    hits = rank(index, query, np.arange(10) * HOP_S, style, k=2)
    assert [h.track_id for h in hits] == [1, 2]


def test_the_tracks_the_windows_vote_for_most_are_the_ones_rescored(catalog):
    """Only `rescore_candidates` tracks (and the best "sounds alike" ones) are aligned exactly:
    those the query's windows vote for most, so that an excerpt whose "sounds alike" vector
    points at another track still finds its own in a catalog larger than that budget."""
    index, tracks = catalog
    query = tracks[7][40:60]
    elsewhere = tracks[20].mean(axis=0)
    config = SearchConfig(rescore_candidates=3)
    hits = rank(index, query, np.arange(20) * HOP_S, elsewhere, k=1, config=config)
    assert hits[0].track_id == 7
