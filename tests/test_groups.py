"""Catalog-wide near-duplicate groups: a planted copy joins its original and nothing else groups;
each version's speed follows the strongest evidence."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import walk

from mirsearch import fingerprint
from mirsearch.config import DuplicateConfig, FeatureConfig
from mirsearch.groups import _speeds, find_groups
from mirsearch.index import VectorIndex
from mirsearch.index_meta import IndexMeta

DIM, HOP_S = 32, 1.5
PRINT_FPS = fingerprint.frames_per_s(FeatureConfig())
THRESHOLD = 0.75  # true excerpts score about 1; chance alignments of random walks below 0.01


def unit_mean(windows: np.ndarray) -> np.ndarray:
    return windows.mean(0) / np.linalg.norm(windows.mean(0))


def test_groups_find_a_planted_copy_and_nothing_else():
    rng = np.random.default_rng(0)
    tracks = {t: walk(rng, 80, dim=DIM) for t in range(1, 21)}
    n_frames = int((80 * HOP_S + 3.0) * PRINT_FPS)
    prints = {t: rng.integers(0, 120, (44, n_frames)).astype(np.float32) for t in tracks}
    index = VectorIndex.create(
        IndexMeta.for_model(dim=DIM, model_hash="x", feature_config={}, hop_s=HOP_S)
    )
    for track_id, windows in tracks.items():
        index.add(track_id, windows, unit_mean(windows))
    copy = tracks[12][20:60] + 0.02 * rng.standard_normal((40, DIM))  # windows 20-59 of track 12
    copy = (copy / np.linalg.norm(copy, axis=1, keepdims=True)).astype(np.float32)
    index.add(100, copy, unit_mean(copy))
    start = int(20 * HOP_S * PRINT_FPS)
    prints[100] = prints[12][:, start : start + int((40 * HOP_S + 3) * PRINT_FPS)]

    groups = find_groups(
        index,
        lambda ids: {t: prints[t] for t in ids if t in prints},
        config=DuplicateConfig(),
        threshold=THRESHOLD,
    )
    assert [g.track_ids for g in groups] == [[12, 100]]
    assert groups[0].evidence[0]["track_offset_s"] in (0.0, pytest.approx(30.0, abs=HOP_S))
    assert groups[0].speeds == {12: 1.0, 100: pytest.approx(1.0, abs=0.01)}


def evidence(query: int, track: int, speed: float, score: float = 1.0, agreement: float = 0.9):
    """A matched pair as find_groups records it: `speed` is the matched track's seconds per
    second of the query track."""
    return {
        "query_track_id": query,
        "track_id": track,
        "speed": speed,
        "score": score,
        "agreement": agreement,
    }


def test_speeds_follow_the_strongest_evidence_from_the_lowest_id():
    # 1 is an original, 2 a copy 5 % fast, 3 one 5 % slow; 2 and 3, 10 % apart, also matched
    # weakly on a chance line beyond the speed grid, which must not set either speed
    pairs = [
        evidence(2, 1, 1.05),  # a second of 2 covers 1.05 s of 1
        evidence(1, 3, 1 / 0.95),
        evidence(2, 3, 1.5, score=0.8, agreement=0.3),
    ]
    assert _speeds(pairs) == {1: 1.0, 2: pytest.approx(1.05), 3: pytest.approx(0.95)}
    assert _speeds(list(reversed(pairs))) == _speeds(pairs)
    assert _speeds([]) == {}
