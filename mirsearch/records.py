"""One analysed file recorded in the catalog: its track row, print and vectors, duplicate flag."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mirsearch.analysis import FileAnalysis
from mirsearch.catalog import load_prints
from mirsearch.config import Settings
from mirsearch.duplicates import find_matches
from mirsearch.flags import unflag_copies_of
from mirsearch.index import VectorIndex
from mirsearch.schema import IndexState, Track, TrackPrint, TrackWaveform

log = logging.getLogger(__name__)
# A failed row keeps its file's identity and its status (no windows); every other column held
# what the file's analysis found (a column added later is cleared too, unless named here).
KEPT_ON_FAILURE = frozenset(
    ("id", "path", "sha256", "size_bytes", "mtime", "updated_at", "status", "error", "n_windows")
)
ANALYSED = tuple(c.key for c in Track.__table__.columns if c.key not in KEPT_ON_FAILURE)


@dataclass
class RunCounts:
    """What an indexing run has made of the files it analysed, counted as each is recorded."""

    indexed: int = 0  # analysed and stored
    failed: int = 0  # recorded as failed, with their message
    changing: int = 0  # replaced or written to while read: left for the next run
    duplicates: int = 0  # of the indexed, those flagged near-duplicates of catalog tracks
    audio_s: float = 0.0  # the indexed tracks' audio


def record(
    session: Session,
    index: VectorIndex,
    result: FileAnalysis,
    model_hash: str,
    counts: RunCounts,
    *,
    settings: Settings,
) -> None:
    """`result` into the track row of its path (made if new) within `session`: a failure
    recorded with its message and nothing of the old audio kept; otherwise the row filled, the
    track flagged if it duplicates one in the catalog, its vectors into `index` and its print
    stored. `counts` goes up by what it was.
    A file that changed while it was read (`result.changing`) leaves its row as it was, or
    none: the next run finds it changed, or new, and analyses it again."""
    if result.changing:
        counts.changing += 1
        log.warning("%s", result.error)
        return
    row = session.scalar(select(Track).where(Track.path == result.path))
    if row is None:
        row = Track(id=_new_track_id(session), path=result.path)
        session.add(row)
    previous_sha256 = row.sha256
    _fill_file_fields(row, result)
    session.flush()
    if previous_sha256 is not None and (
        result.error is not None or result.sha256 != previous_sha256
    ):
        # now, before a later track of the run is checked against its new vectors: a flag that
        # check makes names the content the track holds
        unflag_copies_of(session, row.id)
    if index.contains(row.id):
        index.remove([row.id])
    if result.error is not None:
        row.status, row.error, row.n_windows = "failed", result.error, 0
        for field in ANALYSED:  # what the file held before it could no longer be read
            setattr(row, field, None)
        for stored in (TrackPrint, TrackWaveform):
            session.execute(delete(stored).where(stored.track_id == row.id))
        counts.failed += 1
        log.warning("failed: %s", result.error)
        return
    _flag_duplicate(session, index, row, result, counts, settings=settings)
    index.add(row.id, result.vectors, result.track_vector)
    session.merge(TrackPrint.of(row.id, result.fingerprint))
    session.merge(TrackWaveform.of(row.id, result.waveform, result.sounding))
    _fill_analysis_fields(row, result, model_hash)
    counts.indexed += 1
    counts.audio_s += result.info.duration_s


def _new_track_id(session: Session) -> int | None:
    """A new track's id: on SQLite one past the highest ever committed (IndexState.last_track_id)
    and any this transaction gave, as SQLite itself would give the highest now plus one (the id
    of a track pruned last had gone to the next new track, and a client's reference to the old
    one named another song); elsewhere None, the database's sequence, which never goes back."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    state = session.get(IndexState, 1)
    highest = session.scalar(select(func.max(Track.id))) or 0
    return max(highest, state.last_track_id if state else 0) + 1


def _flag_duplicate(
    session: Session,
    index: VectorIndex,
    row: Track,
    result: FileAnalysis,
    counts: RunCounts,
    *,
    settings: Settings,
) -> None:
    offsets_s = np.arange(len(result.vectors), dtype=np.float32) * settings.embedding.hop_s
    vectors, heard = result.vectors, result.sounding
    if heard is not None and heard.any():  # a pause's windows line up with other tracks' pauses
        vectors, offsets_s = vectors[heard], offsets_s[heard]
    matches = find_matches(
        index,
        vectors,
        offsets_s,
        result.fingerprint,
        lambda ids: load_prints(session, ids),
        config=settings.duplicates,
        threshold=index.meta.match_threshold,
    )
    matches = [m for m in matches if m.track_id != row.id]
    if not matches:
        row.duplicate_of, row.duplicate_evidence = None, None
        return
    best = matches[0]  # find_matches ranks them: the closest version first
    row.duplicate_of = best.track_id
    # each with the content hash its track had (flags.still_holds): a track whose file holds
    # other music since is no version of this one
    row.duplicate_evidence = [
        m.to_dict() | {"track_sha256": session.get(Track, m.track_id).sha256} for m in matches
    ]
    counts.duplicates += 1
    log.info("%s duplicates track %d", row.path, best.track_id)


def _fill_file_fields(row: Track, result: FileAnalysis) -> None:
    row.sha256, row.size_bytes, row.mtime = result.sha256, result.size_bytes, result.mtime
    row.updated_at = datetime.now(UTC)


def _fill_analysis_fields(row: Track, result: FileAnalysis, model_hash: str) -> None:
    info, descriptors = result.info, result.descriptors
    row.format, row.codec = info.format, info.codec
    row.sample_rate, row.channels, row.duration_s = info.sample_rate, info.channels, info.duration_s
    row.title = info.tags.get("title")
    row.artist = info.tags.get("artist")
    row.album = info.tags.get("album")
    row.tag_genre = info.tags.get("genre")
    row.genre = max(result.probabilities, key=result.probabilities.get)
    row.genre_probabilities = {k: round(v, 4) for k, v in result.probabilities.items()}
    row.tags = result.tags
    row.tempo_bpm, row.key = descriptors["tempo_bpm"], descriptors["key"]
    row.loudness_db, row.descriptors = descriptors["loudness_db"], descriptors
    row.status, row.error = "indexed", None
    row.n_windows, row.model_hash = len(result.vectors), model_hash
    row.indexed_at = datetime.now(UTC)
