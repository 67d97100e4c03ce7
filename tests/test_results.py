"""What the queries answer, built from a hit, match or group and the catalog rows."""

from __future__ import annotations

import pytest

from mirsearch.groups import Group
from mirsearch.results import Classification, Examination, MatchResult, Result, group_report
from mirsearch.schema import Track
from mirsearch.scoring import Match
from mirsearch.search import Hit


def _match(**changes) -> Match:
    values = dict(
        track_id=7,
        score=0.91234,
        query_offset_s=1.004,
        track_offset_s=50.0,
        duration_s=9.0,
        speed=1.0,
        windows=12,
        similarity=0.8,
    )
    return Match(**(values | changes))


def test_result_rounds_and_names_the_track() -> None:
    row = Track(path="a/b.ogg", title="B", artist="C", genre="rock", tag_genre="Indie")
    result = Result.of(Hit(3, 0.876543, 12.3456, 20.0049, 32.3456), row)
    assert result.to_dict() == {
        "track_id": 3,
        "path": "a/b.ogg",
        "title": "B",
        "artist": "C",
        "genre": "rock",
        "tag_genre": "Indie",
        "score": 0.8765,
        "offset_s": 12.35,
        "query_offset_s": 20.0,
        "track_offset_s": 32.35,
    }


def test_match_result_keeps_a_stretch_inside_the_track() -> None:
    result = MatchResult.of(_match(), Track(path="t.ogg", title="T", duration_s=120.0))
    assert (result.score, result.query_offset_s, result.duration_s) == (0.9123, 1.0, 9.0)


@pytest.mark.parametrize(
    ("speed", "expected_s"),
    [(1.0, 8.0), (1.05, round(8.0 / 1.05, 2)), (0.95, 8.0)],
)
def test_match_result_stretch_ends_where_the_track_does(speed: float, expected_s: float) -> None:
    """A line's last window can reach past the track's end by up to a catalog hop; the reported
    stretch stops at the end, counted in query seconds (track seconds / speed)."""
    match = _match(track_offset_s=52.0, duration_s=9.0 if speed >= 1 else 8.0, speed=speed)
    result = MatchResult.of(match, Track(path="t.ogg", title="T", duration_s=60.0))
    assert result.duration_s == pytest.approx(expected_s, abs=0.01)


def test_match_result_without_a_known_duration_keeps_the_stretch() -> None:
    result = MatchResult.of(_match(track_offset_s=500.0), Track(path="t.ogg", title=None))
    assert result.duration_s == 9.0


def test_classification_shows_a_timeline_only_when_asked() -> None:
    plain = Classification("rock", {"rock": 0.9, "pop": 0.1})
    assert set(plain.to_dict()) == {"genre", "probabilities", "tags", "similar"}
    window = {"offset_s": 0.0, "genre": "rock", "probability": 0.9}
    assert Classification("rock", {"rock": 1.0}, timeline=[window]).to_dict()["timeline"] == [
        window
    ]


def test_an_examination_lists_the_similar_tracks_once_as_its_results() -> None:
    """`examine` answers search, match and classify at once: the classification's similar
    tracks are the search's results, listed under "results" only."""
    row = Track(path="a.ogg", title="A", artist=None, genre="rock", tag_genre=None)
    hit = Result.of(Hit(3, 0.9, 0.0, 0.0, 0.0), row)
    examined = Examination([hit], [], Classification("rock", {"rock": 1.0}, similar=[hit]))
    assert examined.to_dict() == {
        "results": [hit.to_dict()],
        "matches": [],
        "genre": "rock",
        "probabilities": {"rock": 1.0},
        "tags": [],
    }


def _evidence(query: int, track: int, **changes) -> dict:
    return {"query_track_id": query, **_match(track_id=track, **changes).to_dict()}


def test_group_report_leaves_out_tracks_gone_from_the_catalog() -> None:
    evidence = [_evidence(1, 2, query_offset_s=0.0, track_offset_s=0.0, speed=1.05)]
    group = Group(track_ids=[1, 2, 3], speeds={1: 1.0, 2: 1.05}, evidence=evidence)
    rows = {1: Track(path="one.ogg", title="One"), 2: Track(path="two.ogg", title=None)}
    report = group_report(group, rows)
    assert [t["track_id"] for t in report["tracks"]] == [1, 2]
    assert report["tracks"][1] == {"track_id": 2, "path": "two.ogg", "title": None, "speed": 1.05}
    assert report["evidence"] == evidence


def test_group_report_evidence_ends_where_either_track_does() -> None:
    """Two 30 s files, one a copy of the other: their evidence had said 31.5 s (the last
    window reaching past the end); a copy playing 2 % faster ends sooner in the query's time."""
    rows = {t: Track(path=f"{t}.ogg", title=None, duration_s=30.0) for t in (1, 2, 3)}
    evidence = [
        _evidence(1, 2, query_offset_s=0.0, track_offset_s=0.0, duration_s=31.5, speed=1.0),
        _evidence(1, 3, query_offset_s=0.0, track_offset_s=0.0, duration_s=31.5, speed=1.02),
    ]
    group = Group(track_ids=[1, 2, 3], speeds={1: 1.0, 2: 1.0, 3: 1.02}, evidence=evidence)
    durations = [e["duration_s"] for e in group_report(group, rows)["evidence"]]
    assert durations == [30.0, round(30.0 / 1.02, 2)]
