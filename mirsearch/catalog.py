"""The catalog database: SQLAlchemy models of tracks and the index state, and queries on them."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from mirsearch import fingerprint
from mirsearch.errors import CatalogError, InvalidParameterError, MirsearchError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
SCHEMA_REVISION = "0005"  # the newest migration in MIGRATIONS_DIR (a test holds them together)
STATUSES = ("pending", "indexed", "failed")
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a SQLite connection waits for another writer's lock

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # generic types only, so PostgreSQL works as well as SQLite
        str: sa.Text,
        int: sa.Integer,
        float: sa.Float,
        dict: sa.JSON,
        list: sa.JSON,
        datetime: sa.DateTime(timezone=True),
    }


class Track(Base):
    """One audio file: where it is, what it is, what the model makes of it, its index status."""

    __tablename__ = "tracks"
    __table_args__ = (sa.CheckConstraint(f"status IN {STATUSES!r}", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
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
    genre: Mapped[str | None] = mapped_column(index=True)  # predicted by the model
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
        sa.ForeignKey("tracks.id", ondelete="SET NULL")
    )
    duplicate_evidence: Mapped[list | None]
    indexed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    def to_dict(self) -> dict[str, Any]:
        """Every column, JSON-ready (datetimes as ISO 8601 strings)."""
        out = {}
        for column in self.__table__.columns:
            value = getattr(self, column.key)
            out[column.key] = value.isoformat() if isinstance(value, datetime) else value
        return out


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


@dataclass(frozen=True)
class IndexStatus:
    """A snapshot of the IndexState row; generation 0 means no index has been saved yet."""

    generation: int = 0
    model_hash: str | None = None
    updated_at: datetime | None = None
    catalog_id: str | None = None


class Catalog:
    """The catalog database at `url`, migrated to the newest schema on first use."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = _create_engine(url)
        except (sa.exc.ArgumentError, ImportError, OSError) as exc:  # a typo, no driver, no room
            raise CatalogError(f"the catalog database {_shown(url)} cannot be used: {exc}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrated = False
        self._lock = threading.Lock()

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to `revision`."""
        from alembic import command

        with self.engine.begin() as connection:
            command.upgrade(_alembic_config(connection), revision)
        log.debug("catalog %s upgraded to %s", self.engine.url, revision)
        self._migrated = revision == "head"

    def downgrade(self, revision: str = "base") -> None:
        """Undo the Alembic migrations down to `revision` ("base" drops every table)."""
        from alembic import command

        with self.engine.begin() as connection:
            command.downgrade(_alembic_config(connection), revision)
        self._migrated = False

    def revision(self) -> str | None:
        """The schema revision the database is at (None: no catalog in it yet). Read without
        Alembic, whose import would cost every command ~0.1 s when there is nothing to do."""
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def migrate(self) -> None:
        """Upgrade the schema to this code's revision unless it is there already (the first
        session does it)."""
        with self._lock:
            if not self._migrated:
                try:
                    revision = self.revision()
                except sa.exc.DatabaseError as exc:  # the first contact with the database
                    raise CatalogError(
                        f"the catalog database {_shown(self.url)} cannot be used: {exc.orig}"
                    ) from exc
                if revision != SCHEMA_REVISION:
                    self.upgrade()
                self._migrated = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose objects stay readable after it closes; use `session.begin()` to write."""
        self.migrate()
        with self._sessions() as session:
            yield session

    def get(self, track_id: int) -> Track | None:
        with self.session() as session:
            return session.get(Track, track_id)

    def get_many(self, track_ids: Iterable[int]) -> dict[int, Track]:
        ids = sorted({int(t) for t in track_ids})
        if not ids:
            return {}
        with self.session() as session:
            return {row.id: row for row in session.scalars(select(Track).where(Track.id.in_(ids)))}

    def prints(self, track_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """These tracks' verification prints, (bands, frames) float32; absent ids are left out."""
        with self.session() as session:
            return load_prints(session, track_ids)

    def by_path(self, path: str | Path) -> Track | None:
        with self.session() as session:
            return session.scalar(select(Track).where(Track.path == str(path)))

    def index_state(self) -> IndexStatus:
        with self.session() as session:
            row = session.get(IndexState, 1)
            if row is None:
                return IndexStatus()
            return IndexStatus(row.generation, row.model_hash, row.updated_at, row.catalog_id)

    def list_tracks(
        self,
        *,
        q: str | None = None,
        genre: str | None = None,
        status: str | None = "indexed",
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[list[Track], int]:
        """One page of tracks ordered by id, and the number of tracks matching the filters.

        `q` matches title, artist or path (case-insensitive substring); `genre` matches the
        predicted or the tagged genre (case-insensitive); `status=None` lists every status.
        """
        if page < 1 or per_page < 1:
            raise InvalidParameterError(
                f"page and per_page must be positive, got {page} and {per_page}"
            )
        query = select(Track)
        if status is not None:
            query = query.where(Track.status == status)
        if q:
            columns = (Track.title, Track.artist, Track.path)
            query = query.where(  # `q` as typed: % and _ are no wildcards
                or_(*(func.lower(c).contains(q.lower(), autoescape=True) for c in columns))
            )
        if genre:
            query = query.where(_genre_matches([genre]))
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(
                query.order_by(Track.id).offset((page - 1) * per_page).limit(per_page)
            )
            return list(rows), int(total or 0)

    def genres(self) -> list[tuple[str, int]]:
        """Genres of indexed tracks (predicted and tagged, lower-cased) with track counts.

        A track counts once per distinct genre, so one whose tag agrees with the model counts once.
        Sorted by count, most common first, then by name.
        """
        pairs = union(
            *(
                select(Track.id.label("track_id"), func.lower(func.trim(c)).label("name")).where(
                    Track.status == "indexed", c.is_not(None), func.trim(c) != ""
                )
                for c in (Track.genre, Track.tag_genre)
            )
        ).subquery()
        count = func.count().label("n")
        query = (
            select(pairs.c.name, count).group_by(pairs.c.name).order_by(count.desc(), pairs.c.name)
        )
        with self.session() as session:
            return [(name, int(n)) for name, n in session.execute(query)]

    def track_ids_for_genres(self, genres: Iterable[str]) -> set[int]:
        """Ids of indexed tracks whose predicted or tagged genre is any of `genres`."""
        wanted = [g for g in genres if g and g.strip()]
        if not wanted:
            return set()
        query = select(Track.id).where(Track.status == "indexed", _genre_matches(wanted))
        with self.session() as session:
            return set(session.scalars(query))

    def stats(self) -> dict[str, Any]:
        """Tracks by status, hours of indexed audio, genre counts and the index generation."""
        indexed_s = func.sum(sa.case((Track.status == "indexed", Track.duration_s), else_=0.0))
        with self.session() as session:
            by_status = select(Track.status, func.count()).group_by(Track.status)
            counts = {status: n for status, n in session.execute(by_status)}
            seconds, duplicates = session.execute(
                select(indexed_s, func.count(Track.duplicate_of))
            ).one()
        state = self.index_state()
        return {
            "tracks": sum(counts.values()),
            **{status: int(counts.get(status, 0)) for status in STATUSES},
            "audio_hours": round(float(seconds or 0.0) / 3600.0, 4),
            "duplicates": int(duplicates or 0),
            "genres": dict(self.genres()),
            "index_generation": state.generation,
            "model_hash": state.model_hash,
        }


def load_prints(session: Session, track_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Catalog.prints inside an open session (which sees its own uncommitted rows)."""
    ids = sorted({int(t) for t in track_ids})
    if not ids:
        return {}
    query = select(TrackPrint).where(TrackPrint.track_id.in_(ids))
    return {row.track_id: row.array() for row in session.scalars(query)}


def _genre_matches(genres: list[str]) -> sa.ColumnElement[bool]:
    names = [g.strip().lower() for g in genres]
    return or_(
        func.lower(func.trim(Track.genre)).in_(names),
        func.lower(func.trim(Track.tag_genre)).in_(names),
    )


def _shown(url: str) -> str:
    """`url` as a message may show it: its password hidden."""
    try:
        return str(sa.make_url(url))
    except sa.exc.ArgumentError:
        return "URL (not one SQLAlchemy reads)"


def _create_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_config(connection: sa.Connection):
    """An Alembic Config built in code (no alembic.ini) that migrates over `connection`."""
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise MirsearchError(
            f"the database migrations are missing: expected them in {MIGRATIONS_DIR}; "
            "install mirsearch from its source checkout (pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config
