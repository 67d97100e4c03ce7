"""Near-duplicate groups of the whole catalog: versions of one recording, with the evidence that
joins them and the speed each plays at relative to the group's first track.

Read from what indexing stored: each track's near-duplicate check on ingest (records.py) keeps
the evidence of every catalog track it matched, and matched pairs are joined into groups
(union-find). Nothing is searched again: a catalog of 54 tracks had taken 4-5 s (every track's
windows matched against the rest) on each server process's first view, and a catalog of
millions would have taken days; `dupes` and `index` now agree by construction.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """Catalog tracks that duplicate one another (versions of one recording), with the pairwise
    evidence and each track's playing speed relative to the group's first track."""

    track_ids: list[int]
    evidence: list[dict]
    speeds: dict[int, float] = dataclasses.field(default_factory=dict)  # 1.05: plays 5 % fast


def find_groups(flagged: Iterable[tuple[int, list[dict]]], live: set[int]) -> list[Group]:
    """Every near-duplicate group of the tracks `flagged` (a track id and the matches its check
    on ingest stored, scoring.Match.to_dict each), their evidence naming tracks in `live` only
    (a track deleted or failed since is no longer a version of anything). A pair matched both
    ways (a track indexed again after its copy) keeps its best evidence."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    evidence: dict[tuple[int, int], dict] = {}
    for track_id, matches in flagged:
        for m in matches:
            if track_id not in live or m["track_id"] not in live or m["track_id"] == track_id:
                continue
            pair = (min(track_id, m["track_id"]), max(track_id, m["track_id"]))
            if pair not in evidence or evidence[pair]["score"] < m["score"]:
                evidence[pair] = {"query_track_id": track_id, **m}
            parent[root(pair[0])] = root(pair[1])
    members: dict[int, list[int]] = {}
    for track_id in parent:
        members.setdefault(root(track_id), []).append(track_id)
    joining: dict[int, list[dict]] = {}  # each group's evidence, by its root, in pair order
    for pair, e in sorted(evidence.items()):
        joining.setdefault(root(pair[0]), []).append(e)
    groups = [
        Group(sorted(tracks), joining[top], _speeds(joining[top]))
        for top, tracks in members.items()
    ]
    return sorted(groups, key=lambda g: g.track_ids)


def _speeds(evidence: list[dict]) -> dict[int, float]:
    """Each track's playing speed relative to the lowest id, along the strongest evidence.

    A pair's `speed` is the matched track's seconds per second of the query track: the query
    track plays the matched one that much faster. Tracks are reached through the pairs with the
    highest score and agreement first (a maximum spanning tree): a weak pair, such as two copies
    5 % either side of an original, 10 % apart and beyond the speed grid, never sets a speed
    that a stronger path gives.
    """
    edges: dict[int, list[tuple[tuple[float, float], int, float]]] = {}
    for e in evidence:
        q, t, speed = e["query_track_id"], e["track_id"], e["speed"]
        strength = (e["score"], e.get("agreement", 0.0))
        edges.setdefault(q, []).append((strength, t, 1.0 / speed))
        edges.setdefault(t, []).append((strength, q, speed))
    if not edges:
        return {}
    start = min(edges)
    speeds = {start: 1.0}
    frontier: list[tuple[float, float, int, int, int, float]] = []  # a heap, strongest first
    order = itertools.count()  # equal strengths: the pair reached last goes first

    def reach(here: int) -> None:
        for (score, agreement), there, factor in edges[here]:
            heapq.heappush(frontier, (-score, -agreement, -next(order), here, there, factor))

    reach(start)
    while frontier:
        *_, here, there, factor = heapq.heappop(frontier)
        if there not in speeds:
            speeds[there] = speeds[here] * factor
            reach(there)
    return {t: round(v, 3) for t, v in sorted(speeds.items())}
