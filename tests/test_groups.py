"""Catalog-wide near-duplicate groups, from the flags indexing stored: pairs join into groups,
evidence naming a track gone is dropped, and each version's speed follows the strongest
evidence."""

from __future__ import annotations

import pytest

from mirsearch.groups import _speeds, find_groups


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


def stored(track: int, speed: float = 1.0, score: float = 1.0) -> dict:
    """One match as a track's check on ingest stores it (scoring.Match.to_dict)."""
    return {"track_id": track, "speed": speed, "score": score, "agreement": 0.9}


def test_groups_join_the_stored_pairs_and_keep_only_tracks_still_indexed():
    """5 and 9 copies of 2 (9 also matched 5), 7 a copy of 3, which failed since, 6 a copy of 2
    that failed since, 8 a copy of 4 found again both ways, more strongly the second time (4
    analysed again after it)."""
    flagged = [
        (5, [stored(2)]),
        (6, [stored(2)]),
        (9, [stored(2, speed=1.05), stored(5, speed=1.05, score=0.9)]),
        (7, [stored(3)]),
        (8, [stored(4, score=0.8)]),
        (4, [stored(8, score=0.95)]),
    ]
    groups = find_groups(flagged, live={2, 4, 5, 7, 8, 9})
    assert [g.track_ids for g in groups] == [[2, 5, 9], [4, 8]]
    assert groups[0].speeds == {2: 1.0, 5: 1.0, 9: pytest.approx(1.05)}  # 9 plays 5 % fast
    assert [(e["query_track_id"], e["track_id"], e["score"]) for e in groups[1].evidence] == [
        (4, 8, 0.95)
    ]
    assert find_groups([], live=set()) == []


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
