"""The catalog's database as one process holds it: made where there is none or refused, migrated
to this code's schema on first use, its SQLite file watched while in use, and the sessions every
query runs in (the engine is database.py's, the migrations migrations.py's)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mirsearch.database import (
    cannot_be_used,
    checkpoint,
    create_engine,
    holds_nothing,
    reason,
    shown,
    sqlite_file,
)
from mirsearch.errors import CatalogError, NotFoundError
from mirsearch.migrations import (
    SCHEMA_REVISION,
    alembic_config,
    known_revision,
    migrating,
    missing_column,
)
from mirsearch.schema import Base

log = logging.getLogger(__name__)


class CatalogDatabase:
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


def _identity(file: Path | None) -> tuple[int, int] | None:
    """The (device, inode) of `file`; None for no file, or none there."""
    if file is None:
        return None
    try:
        stat = file.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
