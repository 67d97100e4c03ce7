"""What the queries answer, as the CLI and the HTTP API print it: search hits, the catalog tracks
found inside an upload, a file's genres and tags, and the catalog's near-duplicate groups."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mirsearch.groups import Group
from mirsearch.schema import Track
from mirsearch.scoring import Match
from mirsearch.search import Hit


@dataclass(frozen=True)
class Result:
    """One search hit as the CLI and the HTTP API print it."""

    track_id: int
    path: str
    title: str | None
    artist: str | None
    genre: str | None  # the model's
    tag_genre: str | None  # the file's own tag: a genre filter keeps a track by either
    score: float
    offset_s: float  # the track time where the upload's time 0 lines up (0.0 before its start)
    query_offset_s: float  # where in the upload the part lined up with the track begins ...
    track_offset_s: float  # ... and where in the track: where to play it from

    @classmethod
    def of(cls, hit: Hit, row: Track) -> Result:
        return cls(
            track_id=hit.track_id,
            path=row.path,
            title=row.title,
            artist=row.artist,
            genre=row.genre,
            tag_genre=row.tag_genre,
            score=round(float(hit.score), 4),
            offset_s=round(float(hit.offset_s), 2),
            query_offset_s=round(float(hit.query_offset_s), 2),
            track_offset_s=round(float(hit.track_offset_s), 2),
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MatchResult:
    """A catalog track found inside an upload, with where and how fast it plays."""

    track_id: int
    path: str
    title: str | None
    score: float
    query_offset_s: float
    track_offset_s: float
    duration_s: float
    speed: float

    @classmethod
    def of(cls, match: Match, row: Track) -> MatchResult:
        """`match` told of the track `row`: the aligned stretch ends where the track does (a
        line's last window may reach past it by up to a catalog hop)."""
        duration_s = _ending_in(match.duration_s, match.track_offset_s, row, match.speed)
        return cls(
            track_id=match.track_id,
            path=row.path,
            title=row.title,
            score=round(match.score, 4),
            query_offset_s=round(match.query_offset_s, 2),
            track_offset_s=round(match.track_offset_s, 2),
            duration_s=round(duration_s, 2),
            speed=round(match.speed, 3),
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Classification:
    genre: str
    probabilities: dict[str, float]
    tags: list[dict] = field(default_factory=list)  # best first: {"tag", "score", "kind"}
    similar: list[Result] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {
            "genre": self.genre,
            "probabilities": self.probabilities,
            "tags": self.tags,
            "similar": [r.to_dict() for r in self.similar],
        }
        if self.timeline:
            out["timeline"] = self.timeline
        return out


@dataclass(frozen=True)
class Examination:
    """An upload searched, matched and classified at once (Engine.examine): the fields of the
    three answers side by side, under their names there."""

    results: list[Result]
    matches: list[MatchResult]
    classification: Classification

    def to_dict(self) -> dict:
        classified = self.classification.to_dict()
        del classified["similar"]  # the search's results are the similar tracks
        return {
            "results": [r.to_dict() for r in self.results],
            "matches": [m.to_dict() for m in self.matches],
            **classified,
        }


def _ending_in(duration_s: float, offset_s: float, row: Track | None, speed: float = 1.0) -> float:
    """A stretch of `duration_s` seconds of a query, aligned at `offset_s` seconds of the track
    `row` playing `speed` track seconds a query second, cut where the track ends (a line's last
    window may reach past it by up to a catalog hop)."""
    if row is None or not row.duration_s:
        return duration_s
    return min(duration_s, max(0.0, row.duration_s - offset_s) / speed)


def _evidence_within(evidence: dict, rows: dict[int, Track]) -> dict:
    """A pair's evidence, its stretch ending where either track does."""
    duration_s = _ending_in(
        evidence["duration_s"], evidence["query_offset_s"], rows.get(evidence["query_track_id"])
    )
    duration_s = _ending_in(
        duration_s, evidence["track_offset_s"], rows.get(evidence["track_id"]), evidence["speed"]
    )
    return evidence | {"duration_s": round(duration_s, 2)}


def group_report(group: Group, rows: dict[int, Track]) -> dict:
    """A near-duplicate group as `dupes` prints it: its tracks (those still in the catalog, each
    with its speed relative to the first) and the pairwise evidence."""
    return {
        "tracks": [
            {
                "track_id": t,
                "path": rows[t].path,
                "title": rows[t].title,
                "speed": group.speeds.get(t, 1.0),
            }
            for t in group.track_ids
            if t in rows
        ],
        "evidence": [_evidence_within(e, rows) for e in group.evidence],
    }
