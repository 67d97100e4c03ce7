"""Near-duplicate flags kept true: each track's check on ingest (records.py) stores the matches
it found (`duplicate_evidence`, the closest in `duplicate_of`), each with the content hash its
track had then. A match holds while that track is indexed with that content; the flags naming a
track whose file changed, failed or was pruned are moved to the closest match left, or taken
off, and every reader (`flagged`, `versions`, `stats`) leaves out what no longer holds."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import func, select, union
from sqlalchemy.orm import Session, aliased

from mirsearch.database import IDS_PER_QUERY
from mirsearch.schema import Track


def indexed_contents(session: Session, track_ids: Iterable[int]) -> dict[int, str | None]:
    """The content hash (sha256) of each of these tracks that is indexed; the others left out.
    Asked IDS_PER_QUERY at a time, within `session` (which sees its own uncommitted rows)."""
    ids = sorted({int(t) for t in track_ids})
    contents = {}
    for start in range(0, len(ids), IDS_PER_QUERY):
        query = select(Track.id, Track.sha256).where(
            Track.id.in_(ids[start : start + IDS_PER_QUERY]), Track.status == "indexed"
        )
        contents |= {track_id: sha256 for track_id, sha256 in session.execute(query)}
    return contents


def still_holds(match: dict, contents: dict[int, str | None]) -> bool:
    """Whether a match a duplicate check stored (records.py) still names a version: its track is
    indexed (in `contents`, indexed_contents) and holds the content it was matched with. A match
    stored before it recorded that content (no "track_sha256") holds while its track is indexed."""
    if match["track_id"] not in contents:
        return False
    matched = match.get("track_sha256")
    return matched is None or matched == contents[match["track_id"]]


def flagged(session: Session) -> list[tuple[int, list[dict]]]:
    """The indexed tracks indexing found to duplicate others: each id with the matches its
    check on ingest stored (records.py), by way of the index on duplicate_of, those that no
    longer hold (`still_holds`) left out, and the tracks left with none."""
    query = select(Track.id, Track.duplicate_evidence).where(
        Track.duplicate_of.is_not(None), Track.status == "indexed"
    )
    stored = [(track_id, evidence or []) for track_id, evidence in session.execute(query)]
    contents = indexed_contents(session, (m["track_id"] for _, e in stored for m in e))
    holding = [(t, [m for m in evidence if still_holds(m, contents)]) for t, evidence in stored]
    return [(track_id, evidence) for track_id, evidence in holding if evidence]


def versions(session: Session, track_ids: Iterable[int]) -> set[int]:
    """The indexed tracks that indexing found to be near-duplicates of these (other versions of
    their recordings): those whose duplicate_of names one of them, and those they name; the ids
    asked about are left out."""
    ids = sorted({int(t) for t in track_ids})
    if not ids:
        return set()
    named = select(Track.duplicate_of).where(Track.id.in_(ids))
    # two lookups by index (duplicate_of's, the ids'), not one query whose OR had SQLite scan
    # every indexed track (by the status index: 2.2 ms at 2,583 tracks, ~1 s at 1 M)
    naming = select(Track.id).where(Track.duplicate_of.in_(ids))
    named_ids = select(Track.id).where(Track.id.in_(named))
    linked = union(naming, named_ids).subquery()
    query = select(Track.id).where(Track.id.in_(select(linked)), Track.status == "indexed")
    return set(session.scalars(query)) - set(ids)


def count_flagged() -> sa.Select:
    """The query counting the indexed tracks flagged as duplicates of an indexed track: those
    `flagged` gives, counted in SQL (`stats` answers every health check) as indexing keeps each
    flag on a match that still holds, or takes it off (forget_matches)."""
    target = aliased(Track)
    return (
        select(func.count())
        .select_from(Track)
        .join(target, Track.duplicate_of == target.id)
        .where(Track.status == "indexed", target.status == "indexed")
    )


def unflag_copies_of(session: Session, track_id: int) -> None:
    """The tracks flagged as duplicates of track `track_id`, whose file now holds other content
    or none that reads, each flagged on its closest match left, or unflagged. Found by the index
    on duplicate_of, not by reading every track's evidence: a match naming it further down a
    list stops holding by its content hash (still_holds)."""
    for copy in session.scalars(select(Track).where(Track.duplicate_of == track_id)):
        forget_matches(session, copy, {track_id})


def forget_matches(session: Session, row: Track, gone: set[int]) -> None:
    """`row`'s duplicate evidence without the matches naming tracks `gone` and those that no
    longer hold (still_holds): its flag on the closest match left, or none."""
    evidence = row.duplicate_evidence or []
    contents = indexed_contents(session, (m["track_id"] for m in evidence))
    kept = [m for m in evidence if m["track_id"] not in gone and still_holds(m, contents)]
    row.duplicate_evidence = kept or None
    row.duplicate_of = kept[0]["track_id"] if kept else None


def forget_duplicates_of(session: Session, gone: set[int]) -> None:
    """The evidence that names tracks `gone` taken off the tracks flagged as their duplicates:
    each stays flagged as a duplicate of the closest track left, or of none."""
    for row in session.scalars(select(Track).where(Track.duplicate_evidence.is_not(None))):
        if any(m["track_id"] in gone for m in row.duplicate_evidence or ()):
            forget_matches(session, row, gone)
