"""Near-duplicate matching on synthetic window tracks, and on real music with the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import walk, windows_at

from mirsearch.config import DuplicateConfig
from mirsearch.duplicates import find_groups, find_matches
from mirsearch.index import IndexMeta, VectorIndex

DIM, HOP_S, QUERY_HOP_S = 32, 1.5, 0.5
CONFIG = DuplicateConfig()
THRESHOLD = 0.75  # true excerpts score about 1; chance alignments of random walks up to ~0.55


@pytest.fixture(scope="module")
def catalog():
    rng = np.random.default_rng(0)
    tracks = {t: walk(rng, 80, dim=DIM) for t in range(1, 21)}
    index = VectorIndex.create(
        IndexMeta.for_model(dim=DIM, model_hash="x", feature_config={}, hop_s=HOP_S)
    )
    for track_id, windows in tracks.items():
        index.add(track_id, windows, windows.mean(0) / np.linalg.norm(windows.mean(0)))
    return index, tracks


def excerpt(windows, start_s: float, seconds: float, *, speed: float = 1.0):
    """Query windows every QUERY_HOP_S of an excerpt played `speed` times as fast."""
    query_times = np.arange(0, seconds - 3.0 + 1e-9, QUERY_HOP_S)
    return windows_at(windows, start_s + speed * query_times, hop_s=HOP_S), query_times


def test_excerpt_is_found_with_its_offsets(catalog):
    index, tracks = catalog
    vectors, times = excerpt(tracks[7], 30.0, 10.0)
    matches = find_matches(index, vectors, times, config=CONFIG, threshold=THRESHOLD)
    assert [m.track_id for m in matches] == [7]
    assert matches[0].track_offset_s == pytest.approx(30.0, abs=HOP_S)
    assert matches[0].query_offset_s == pytest.approx(0.0, abs=QUERY_HOP_S)
    assert matches[0].duration_s == pytest.approx(10.0, abs=1.0)


def test_sped_up_excerpt_is_found_with_its_speed(catalog):
    index, tracks = catalog
    vectors, times = excerpt(tracks[3], 10.0, 60.0, speed=1.05)
    match = find_matches(index, vectors, times, config=CONFIG, threshold=THRESHOLD)[0]
    assert match.track_id == 3
    assert match.speed == pytest.approx(1.05, abs=0.025)  # catalog windows are 1.5 s apart


def test_random_query_matches_nothing(catalog):
    index, _ = catalog
    vectors = walk(np.random.default_rng(99), 30, dim=DIM)
    assert (
        find_matches(
            index, vectors, np.arange(30) * QUERY_HOP_S, config=CONFIG, threshold=THRESHOLD
        )
        == []
    )


def test_two_excerpts_back_to_back_give_both(catalog):
    index, tracks = catalog
    a, ta = excerpt(tracks[4], 20.0, 12.0)
    b, tb = excerpt(tracks[9], 50.0, 12.0)
    vectors = np.concatenate([a, b])
    times = np.concatenate([ta, ta[-1] + QUERY_HOP_S + tb])
    matches = find_matches(index, vectors, times, config=CONFIG, threshold=THRESHOLD)
    assert {m.track_id for m in matches} == {4, 9}
    later = next(m for m in matches if m.track_id == 9)
    assert later.query_offset_s == pytest.approx(ta[-1] + QUERY_HOP_S, abs=1.0)


def test_groups_find_a_planted_copy_and_nothing_else(catalog):
    index, tracks = catalog
    copy = tracks[12][20:60] + 0.02 * np.random.default_rng(5).standard_normal((40, DIM))
    copy /= np.linalg.norm(copy, axis=1, keepdims=True)
    index.add(100, copy.astype(np.float32), copy.mean(0) / np.linalg.norm(copy.mean(0)))
    try:
        groups = find_groups(index, config=CONFIG, threshold=THRESHOLD)
    finally:
        index.remove([100])
    assert [g.track_ids for g in groups] == [[12, 100]]
    assert groups[0].evidence[0]["track_offset_s"] in (0.0, pytest.approx(30.0, abs=HOP_S))
