"""The catalog: its tracks looked up by id, path or content, their prints, waveforms and
duplicate flags, its index state and counts; listed by listing.py, over the database
catalog_database.py holds open."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mirsearch.catalog_database import CatalogDatabase
from mirsearch.database import IDS_PER_QUERY
from mirsearch.flags import count_flagged, flagged, versions
from mirsearch.listing import Listing
from mirsearch.schema import STATUSES, IndexState, Track, TrackPrint, TrackWaveform


@dataclass(frozen=True)
class IndexStatus:
    """A snapshot of the IndexState row; generation 0 means no index has been saved yet."""

    generation: int = 0
    model_hash: str | None = None
    updated_at: datetime | None = None
    catalog_id: str | None = None


class Catalog(Listing, CatalogDatabase):
    """The catalog at `url` (a CatalogDatabase: made or migrated on first use) and the queries
    on its tracks; those that list them are Listing's."""

    def get(self, track_id: int) -> Track | None:
        with self.session() as session:
            return session.get(Track, track_id)

    def get_many(self, track_ids: Iterable[int]) -> dict[int, Track]:
        """These tracks by id; absent ids are left out. Asked IDS_PER_QUERY at a time (SQLite
        takes at most 32,766 values in one query)."""
        ids = sorted({int(t) for t in track_ids})
        if not ids:
            return {}
        found = {}
        with self.session() as session:
            for start in range(0, len(ids), IDS_PER_QUERY):
                chunk = ids[start : start + IDS_PER_QUERY]
                found |= {
                    row.id: row for row in session.scalars(select(Track).where(Track.id.in_(chunk)))
                }
        return found

    def flagged(self) -> list[tuple[int, list[dict]]]:
        """The indexed tracks indexing found to duplicate others, with the matches that still
        hold (flags.flagged)."""
        with self.session() as session:
            return flagged(session)

    def versions(self, track_ids: Iterable[int]) -> set[int]:
        """The catalog's other versions of these tracks (flags.versions)."""
        with self.session() as session:
            return versions(session, track_ids)

    def prints(self, track_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """These tracks' verification prints, (bands, frames) float32; absent ids are left out."""
        with self.session() as session:
            return load_prints(session, track_ids)

    def waveform(self, track_id: int) -> TrackWaveform | None:
        """The track's waveform: its page's peaks and its windows with sound (None for a track
        indexed before migration 0006)."""
        with self.session() as session:
            return session.get(TrackWaveform, track_id)

    def holding(self, sha256: str) -> set[int]:
        """The indexed tracks whose file has this content hash (a file, or an exact copy)."""
        query = select(Track.id).where(Track.sha256 == sha256, Track.status == "indexed")
        with self.session() as session:
            return set(session.scalars(query))

    def by_path(self, path: str | Path) -> Track | None:
        with self.session() as session:
            return session.scalar(select(Track).where(Track.path == str(path)))

    def index_state(self) -> IndexStatus:
        with self.session() as session:
            row = session.get(IndexState, 1)
            if row is None:
                return IndexStatus()
            return IndexStatus(row.generation, row.model_hash, row.updated_at, row.catalog_id)

    def counts(self) -> dict[str, int]:
        """How many tracks have each status (those with none left out): by the status index,
        what a health probe asks, not `stats`, which reads every row for its hours of audio."""
        by_status = select(Track.status, func.count()).group_by(Track.status)
        with self.session() as session:
            return {status: int(n) for status, n in session.execute(by_status)}

    def stats(self) -> dict[str, Any]:
        """Tracks by status, hours of indexed audio, genre counts and the index generation: all
        but the genres read in one statement, so they are of one moment (read one by one, an
        index run committing in between had paired one generation's track count with the next
        one's generation and windows)."""
        by_status = select(
            Track.status,
            func.count(),
            func.sum(Track.duration_s),
            count_flagged().scalar_subquery(),
            _of_index_state(IndexState.generation),
            _of_index_state(IndexState.model_hash),
        ).group_by(Track.status)
        with self.session() as session:
            rows = session.execute(by_status).all()
        if not rows:  # no track yet: the generation is read alone
            index = self.index_state()
            generation, model_hash, duplicates = index.generation, index.model_hash, 0
        else:
            generation, model_hash, duplicates = rows[0][4] or 0, rows[0][5], rows[0][3]
        counts = {status: int(n) for status, n, *_ in rows if status is not None}
        seconds = sum(s or 0.0 for status, _, s, *_ in rows if status == "indexed")
        return {
            "tracks": sum(counts.values()),
            **{status: counts.get(status, 0) for status in STATUSES},
            "audio_hours": round(float(seconds) / 3600.0, 4),
            "duplicates": int(duplicates or 0),
            "genres": dict(self.genres()),
            "index_generation": generation,
            "model_hash": model_hash,
        }


def _of_index_state(column: sa.ColumnElement) -> sa.ScalarSelect:
    """`column` of the index state, as a value of another query."""
    return select(column).where(IndexState.id == 1).scalar_subquery()


def load_prints(session: Session, track_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Catalog.prints inside an open session (which sees its own uncommitted rows)."""
    ids = sorted({int(t) for t in track_ids})
    if not ids:
        return {}
    query = select(TrackPrint).where(TrackPrint.track_id.in_(ids))
    return {row.track_id: row.array() for row in session.scalars(query)}
