"""The catalog's schema: SQLAlchemy 2.0 models of tracks, their genres, prints, the index state."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from mirsearch import fingerprint

STATUSES = ("pending", "indexed", "failed")
MAX_TRACK_ID = 2**31 - 1  # tracks.id is an INTEGER: 32 bits on PostgreSQL

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _now() -> datetime:
    return datetime.now(UTC)


def genre_name(text: str) -> str:
    """A genre as the catalog files it and a filter asks for it: trimmed, lower-cased (every
    script, not ASCII alone) and composed (an é typed on a Mac is one character)."""
    return unicodedata.normalize("NFC", text.strip().lower())


def filed_genres(genre: str | None, tag_genre: str | None) -> set[str]:
    """The genres a track is filed under: the predicted one and each of its tag's, which holds
    several where FFmpeg joined a file's GENRE tags ("Rock;Pop" is rock and pop); no blank."""
    names = [genre or "", *(tag_genre or "").split(";")]
    return {genre_name(name) for name in names} - {""}


def tag_beside(genre: str | None, tag_genre: str | None) -> str | None:
    """The file's genre tag, trimmed, where it files the track under a genre the predicted one
    is not (shown beside it: "electronic · tagged jazz", as a genre filter keeps either), else
    None."""
    tagged = (tag_genre or "").strip()
    return tagged if filed_genres(genre, tagged) - filed_genres(genre, None) else None


class UtcDateTime(sa.TypeDecorator):
    """A moment, stored and read back in UTC on every database: SQLite keeps no time zone (its
    times had read back naive, an aware one stored at its own wall clock) and PostgreSQL gives
    its session's (`tracks --json` had said 16:34:37 on the one, 11:34:37-05:00 on the other)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # generic types only, so PostgreSQL works as well as SQLite
        str: sa.Text,
        int: sa.Integer,
        float: sa.Float,
        dict: sa.JSON,
        list: sa.JSON,
        datetime: UtcDateTime,
    }


class Track(Base):
    """One audio file: where it is, what it is, what the model makes of it, its index status."""

    __tablename__ = "tracks"
    __table_args__ = (sa.CheckConstraint(f"status IN {STATUSES!r}", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)  # up to MAX_TRACK_ID
    path: Mapped[str] = mapped_column(unique=True)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    mtime: Mapped[float | None]
    format: Mapped[str | None]  # FFmpeg's container name
    codec: Mapped[str | None]
    sample_rate: Mapped[int | None]
    channels: Mapped[int | None]
    duration_s: Mapped[float | None]
    title: Mapped[str | None]
    artist: Mapped[str | None]
    album: Mapped[str | None]
    tag_genre: Mapped[str | None]  # from the file's tags
    genre: Mapped[str | None]  # predicted by the model
    genre_probabilities: Mapped[dict | None]  # {genre: probability}
    tags: Mapped[list | None]  # the model's best tags: [{"tag", "score", "kind"}], best first
    tempo_bpm: Mapped[float | None]
    key: Mapped[str | None]  # "C major", "A minor"
    loudness_db: Mapped[float | None]
    descriptors: Mapped[dict | None]  # features.Descriptors.to_dict()
    status: Mapped[str] = mapped_column(default="pending", index=True)
    error: Mapped[str | None]  # why the file failed, for a person
    n_windows: Mapped[int] = mapped_column(default=0)
    model_hash: Mapped[str | None]
    duplicate_of: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tracks.id", ondelete="SET NULL"), index=True
    )
    duplicate_evidence: Mapped[list | None]
    indexed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)
    # filed_genres of genre and tag_genre, one row each, kept so by `_refile` whenever either is
    # set (and deleted with the track by the database: ON DELETE CASCADE)
    filed: Mapped[list[TrackGenre]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("genre", "tag_genre")
    def _refile(self, key: str, value: str | None) -> str | None:
        """Keep `filed` to the genres of the row as `key` becomes `value`; the rows of genres it
        keeps stay (deleted and added again in one flush they would clash on the primary key)."""
        genre, tag_genre = (value, self.tag_genre) if key == "genre" else (self.genre, value)
        wanted = filed_genres(genre, tag_genre)
        kept = [row for row in self.filed if row.genre in wanted]
        added = wanted - {row.genre for row in kept}
        self.filed = kept + [TrackGenre(genre=name) for name in sorted(added)]
        return value

    def to_dict(self) -> dict[str, Any]:
        """Every column, JSON-ready (datetimes as ISO 8601 strings)."""
        out = {}
        for column in self.__table__.columns:
            value = getattr(self, column.key)
            out[column.key] = value.isoformat() if isinstance(value, datetime) else value
        return out


class TrackGenre(Base):
    """A genre a track is filed under (filed_genres): what genre filters look up by index, where
    matching the tracks' own columns read every row (at 100,000 tracks a rare genre's tracks
    139 → 3 ms; bench/filters.py), and what the genre counts (GenreCount) are kept from."""

    __tablename__ = "track_genres"
    __table_args__ = (sa.Index("ix_track_genres_genre_track_id", "genre", "track_id"),)

    track_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    genre: Mapped[str] = mapped_column(primary_key=True)


class GenreCount(Base):
    """How many indexed tracks are filed under a genre (track_genres): what the genre list reads,
    where counting the filings read one row a track filed (at 100,000 tracks 54 ms, every view of
    the site's search and catalog pages). Kept by triggers on track_genres and tracks (migration
    0012), whatever writes them; a genre no indexed track holds stays at 0."""

    __tablename__ = "genre_counts"

    genre: Mapped[str] = mapped_column(primary_key=True)
    tracks: Mapped[int]


class TrackPrint(Base):
    """A track's verification print (mirsearch.fingerprint), stored compactly in `format`."""

    __tablename__ = "track_prints"

    track_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    bands: Mapped[int]
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # fingerprint.FORMAT when written; migration 0003 converted the 1-byte prints of format 1
    format: Mapped[int] = mapped_column(default=fingerprint.FORMAT, server_default="1")

    @classmethod
    def of(cls, track_id: int, print_db: np.ndarray) -> TrackPrint:
        """The row storing `print_db` (bands, frames), a print from fingerprint.make_print."""
        return cls(
            track_id=track_id,
            bands=print_db.shape[0],
            data=fingerprint.encode(print_db),
            format=fingerprint.FORMAT,
        )

    def array(self) -> np.ndarray:
        """The stored print (bands, frames) float32; IndexMismatchError for another format."""
        return fingerprint.decode(self.data, format=self.format)


class TrackWaveform(Base):
    """A track's shape in time, kept beside the row as the print is (listings read small rows):
    the peaks its page draws (features.peak_envelope, 400 bytes) and which of its index windows
    lie in a pause (levels.sounding_windows; one bit a window), left out when it is the query of
    `similar` as they are from a clip's search."""

    __tablename__ = "track_waveforms"

    track_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    peaks: Mapped[bytes] = mapped_column(sa.LargeBinary)
    quiet: Mapped[bytes] = mapped_column(sa.LargeBinary)  # np.packbits of the pause windows

    @classmethod
    def of(cls, track_id: int, peaks: bytes, sounding: np.ndarray) -> TrackWaveform:
        return cls(track_id=track_id, peaks=peaks, quiet=np.packbits(~sounding).tobytes())

    def sounding(self, n_windows: int) -> np.ndarray:
        """(n_windows,) bool: the windows with sound."""
        quiet = np.frombuffer(self.quiet, dtype=np.uint8)
        return ~np.unpackbits(quiet, count=n_windows).astype(bool)


class IndexState(Base):
    """The single row saying which generation of the vector index files the catalog matches."""

    __tablename__ = "index_state"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    generation: Mapped[int] = mapped_column(default=0)
    model_hash: Mapped[str | None]
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)
    # drawn with the row; each index generation's meta file records it (index_meta.read_meta)
    catalog_id: Mapped[str | None] = mapped_column(sa.String(32), default=lambda: uuid.uuid4().hex)
    # the highest track id ever committed: on SQLite a new track's id is past it (records.py)
    last_track_id: Mapped[int] = mapped_column(default=0, server_default="0")
