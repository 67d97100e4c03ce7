"""The catalog: the queries on its tracks, over the database that database.py makes and migrates."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mirsearch.config import MAX_PAGE
from mirsearch.database import (
    IDS_PER_QUERY,
    SCHEMA_REVISION,
    alembic_config,
    cannot_be_used,
    checkpoint,
    create_engine,
    holds_nothing,
    known_revision,
    migrating,
    missing_column,
    reason,
    shown,
    sqlite_file,
)
from mirsearch.errors import CatalogError, InvalidParameterError, NotFoundError
from mirsearch.flags import count_flagged, flagged, versions
from mirsearch.schema import (
    STATUSES,
    Base,
    GenreCount,
    IndexState,
    Track,
    TrackPrint,
    TrackWaveform,
)
from mirsearch.track_filters import (
    TEXT_INDEX,
    check_text,
    check_words,
    genre_matches,
    text_matches,
    text_rank,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexStatus:
    """A snapshot of the IndexState row; generation 0 means no index has been saved yet."""

    generation: int = 0
    model_hash: str | None = None
    updated_at: datetime | None = None
    catalog_id: str | None = None


class Catalog:
    """The catalog database at `url`, migrated to the newest schema on first use; made there if
    it does not exist, unless `create` is False (then NotFoundError says where it was looked for:
    a command that only reads must not leave an empty catalog where a mistyped home points)."""

    def __init__(self, url: str, *, create: bool = True):
        self.url, self.create = url, create
        try:
            self.file = sqlite_file(url)  # None: a server's database, or one in memory
            self.engine = create_engine(url, create=create)
        except (sa.exc.ArgumentError, ImportError, OSError) as exc:  # a typo, no driver, no room
            told = exc
            if isinstance(exc, FileExistsError | NotADirectoryError):  # a home that is a file
                told = f"cannot make the folder {exc.filename}: a file is in its way"
            raise CatalogError(f"the catalog database {shown(url)} cannot be used: {told}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrated = False
        self._opened: tuple[int, int] | None = None  # the SQLite file's (device, inode) once used
        self._lock = threading.Lock()

    @property
    def shown_url(self) -> str:
        """The database's URL as a message may show it (its password hidden)."""
        return shown(self.url)

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to `revision`; at the head, check the tables hold every
        column this code's models name. CatalogError for a database stamped by a newer version (a
        revision this one does not know) or one whose history this one cannot follow."""
        from alembic import command
        from alembic.util import CommandError

        try:
            with self._connection() as connection, migrating(connection):
                command.upgrade(alembic_config(connection), revision)
        except CommandError as exc:
            stamped = self.revision()
            if stamped is None or known_revision(stamped):
                raise
            raise CatalogError(
                f"the catalog database {self.shown_url} is at schema revision {stamped}, which "
                f"this version of mirsearch does not know (its newest is {SCHEMA_REVISION}): a "
                "newer version upgraded it. Use that version, or go back with its "
                f"`mirsearch db downgrade {SCHEMA_REVISION}`"
            ) from exc
        self.checkpoint()
        # told before anything writes to it: an index run had failed halfway, its old index
        # already put aside
        missing = missing_column(self.engine, Base.metadata) if revision == "head" else None
        if missing:
            raise CatalogError(
                f"the catalog database {self.shown_url} lacks the column {missing} its schema "
                "revision should have: a version whose migrations this one cannot follow made "
                "it. Index the music again into a new catalog (another MIRSEARCH_HOME, or "
                "delete catalog.db and the index folder)"
            )
        log.debug("catalog %s upgraded to %s", self.engine.url, revision)
        self._migrated = revision == "head"

    def downgrade(self, revision: str = "base") -> None:
        """Undo the Alembic migrations down to `revision` ("base" drops every table)."""
        from alembic import command

        with self._connection() as connection, migrating(connection):
            command.downgrade(alembic_config(connection), revision)
        self._migrated = False
        self.__dict__.pop("_text_index", None)  # to be read again once migrated

    def _connection(self) -> sa.Connection:
        """A connection to the database; CatalogError if it cannot be had or is not one."""
        try:
            return self.engine.connect()
        except sa.exc.DatabaseError as exc:
            raise self._unusable(exc) from exc

    def _unusable(self, exc: sa.exc.DBAPIError) -> CatalogError:
        """The driver's error `exc`, as a command tells it and a server answers it (503)."""
        return CatalogError(f"the catalog database {self.shown_url} cannot be used: {reason(exc)}")

    def revision(self) -> str | None:
        """The schema revision the database is at (None: no catalog in it yet); CatalogError
        where the database cannot be used (not a database, unreachable). Read without Alembic,
        whose import would cost every command ~0.1 s when there is nothing to do."""
        try:
            with self._connection() as connection:
                if not sa.inspect(connection).has_table("alembic_version"):
                    return None
                query = sa.text("SELECT version_num FROM alembic_version")
                return connection.execute(query).scalar()
        except sa.exc.DatabaseError as exc:  # not a database: said in a line, as on every use
            raise self._unusable(exc) from exc

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def checkpoint(self) -> None:
        """Fold a SQLite catalog's write-ahead log into its file (database.checkpoint)."""
        checkpoint(self.engine)

    def exists(self) -> bool:
        """Whether the database is there (a SQLite file may not be yet, or be one of 0 bytes,
        which holds none; a server's always is)."""
        return self.file is None or (self.file.exists() and not holds_nothing(self.file))

    def make(self) -> None:
        """Let the database be made where there is none (an indexing run asks it of a catalog
        opened to read): its folder made now, its tables on first use."""
        self.create = True
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)

    def require(self) -> None:
        """NotFoundError if there is no database and this catalog may not make one: a SQLite file
        of 0 bytes is none (opened, it had been made an empty database)."""
        if not self.create and not self.exists():
            if self.file.parent.exists() and not self.file.parent.is_dir():  # no index run can
                raise CatalogError(  # make one there: "run `mirsearch index`" would mislead
                    f"the catalog database {self.shown_url} cannot be used: "
                    f"{self.file.parent} is a file, not the catalog's folder"
                )
            if self.file.exists():
                raise NotFoundError(
                    f"no catalog at {self.file}: the file is empty (0 bytes); run `mirsearch "
                    "index PATH` to make one there (or point MIRSEARCH_HOME at the catalog's "
                    "folder)"
                )
            raise NotFoundError(
                f"no catalog at {self.file}: run `mirsearch index PATH` first (or "
                "point MIRSEARCH_HOME at the catalog's folder)"
            )

    def migrate(self) -> None:
        """Upgrade the schema to this code's revision unless it is there already (the first
        session does it)."""
        with self._lock:
            if not self._migrated:
                self.require()
                revision = self.revision()  # the first contact with the database
                if revision is None and not self.create:  # a server's database, empty
                    raise NotFoundError(
                        f"no catalog in {self.shown_url}: run `mirsearch index PATH` first"
                    )
                if revision != SCHEMA_REVISION:
                    try:
                        self.upgrade()
                    except sa.exc.DatabaseError as exc:  # a full disk, a lost connection
                        raise self._unusable(exc) from exc
                self._migrated = True
                self._opened = _identity(self.file)
        self._still_there()

    @property
    def opened(self) -> bool:
        """Whether this catalog has used its SQLite file (which must then stay where it is)."""
        return self._opened is not None

    def _still_there(self) -> None:
        """CatalogError where the SQLite file this catalog used is no longer at its path (moved
        away or deleted, another file put there): the pool's connections would go on reading the
        old one, and a new connection would make an empty catalog where it was (a server had
        answered every query "the catalog is empty", and its health "ok")."""
        if self._opened is None or _identity(self.file) == self._opened:
            return
        now = "another file is there now" if self.file.exists() else "nothing is there now"
        raise CatalogError(
            f"the catalog database {self.file} cannot be used: it was moved or deleted while in "
            f"use ({now}); put it back, or start again to use the catalog at that path"
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose objects stay readable after it closes; use `session.begin()` to write.
        The database lost in it (a server stopped, a network gone) is a CatalogError: a command
        says so in a line, the server answers 503 (a traceback and a 500 before)."""
        self.migrate()
        try:
            with self._sessions() as session:
                yield session
        except sa.exc.DatabaseError as exc:
            if not cannot_be_used(exc):  # a constraint broken: a bug, told as it is
                raise
            raise self._unusable(exc) from exc

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

    def list_tracks(
        self,
        *,
        q: str | None = None,
        genre: str | None = None,
        status: str | None = "indexed",
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[list[Track], int]:
        """One page of tracks, and the number of tracks matching the filters; ordered by id,
        or for a text `q` those its words find in the title and artist first (text_rank).

        `q`: words each held by the title, artist or path (track_filters.text_matches); `genre`
        matches the predicted or the tagged genre (case-insensitive); `status=None` lists every
        status.
        """
        if not (1 <= page <= MAX_PAGE and 1 <= per_page <= MAX_PAGE):
            raise InvalidParameterError(
                f"page and per_page must be 1 to {MAX_PAGE:,}, got {page} and {per_page}"
            )
        check_text("q", q)
        check_words(q)
        query = select(Track)
        if status is not None:
            query = query.where(Track.status == status)
        order = [Track.id]
        if q:
            query = query.where(text_matches(q, trigrams=self._text_index))
            order.insert(0, text_rank(q))
        if genre:
            query = query.where(genre_matches([genre]))
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(
                query.order_by(*order).offset((page - 1) * per_page).limit(per_page)
            )
            return list(rows), int(total or 0)

    @cached_property
    def _text_index(self) -> bool:
        """Whether SQLite's text index (migration 0011) is there to name a text search's
        candidates: not where that SQLite lacks FTS5's trigram tokenizer, nor on PostgreSQL,
        whose trigram indexes serve the search's own predicate."""
        if self.engine.dialect.name != "sqlite":
            return False
        self.migrate()
        with self.engine.connect() as connection:
            return sa.inspect(connection).has_table(TEXT_INDEX.name)

    def genres(self) -> list[tuple[str, int]]:
        """Genres of indexed tracks (predicted and tagged, as schema.genre_name files them) with
        track counts: a track counts once per distinct genre, so one whose tag agrees with the
        model counts once, and one whose tag holds several genres ("Rock; Pop") counts in each.
        Sorted by count, most common first, then by name. Read from the counts kept per genre
        (migration 0012)."""
        query = select(GenreCount.genre, GenreCount.tracks).where(GenreCount.tracks > 0)
        with self.session() as session:
            counts = [(name, int(n)) for name, n in session.execute(query)]
        return sorted(counts, key=lambda pair: (-pair[1], pair[0]))

    def track_ids_for_genres(self, genres: Iterable[str]) -> set[int]:
        """Ids of indexed tracks whose predicted or tagged genre is any of `genres`."""
        wanted = [g for g in genres if g and g.strip()]
        if not wanted:
            return set()
        query = select(Track.id).where(Track.status == "indexed", genre_matches(wanted))
        with self.session() as session:
            return set(session.scalars(query))

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


def _identity(file: Path | None) -> tuple[int, int] | None:
    """The (device, inode) of `file`; None for no file, or none there."""
    if file is None:
        return None
    try:
        stat = file.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


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
