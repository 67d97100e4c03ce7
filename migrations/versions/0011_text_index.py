"""An index of the trigrams of each track's title, artist and path: a text search (`--q`, the
site's search box) had lower-cased and matched every row, in proportion to the catalog.

SQLite: `track_text`, an FTS5 table of the trigram tokenizer holding the three texts lower-cased
as the search compares them (Python's lower, `mirsearch_lower`, which database.py gives every
connection of ours), kept by triggers on tracks; it holds no text of its own (content='') and
no positions (detail='none'), so it names candidates that the search's own predicate then
checks. A connection without `mirsearch_lower` (the sqlite3 shell) cannot change a track's
texts: it is told "no such function", where it would have put the index out of step. A SQLite
without FTS5's trigram tokenizer (before 3.34) gets no index, and a search reads every row as
before. A later migration that rebuilds `tracks` (Alembic's batch mode) drops the triggers with
it and must make them again.

PostgreSQL: the pg_trgm extension's GIN indexes on lower(title), lower(artist) and lower(path),
which serve the search's LIKE itself; where the extension cannot be made (not installed, or a
role that may not), no index, as before. Going back drops the indexes and leaves the extension,
which other uses of the database may rely on.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

COLUMNS = ("title", "artist", "path")
SQLITE_UP = (
    "CREATE VIRTUAL TABLE track_text USING fts5(title, artist, path, "
    "content='', tokenize='trigram case_sensitive 1', detail='none')",
    """CREATE TRIGGER track_text_insert AFTER INSERT ON tracks BEGIN
        INSERT INTO track_text (rowid, title, artist, path) VALUES (new.id,
            mirsearch_lower(new.title), mirsearch_lower(new.artist), mirsearch_lower(new.path));
    END""",
    """CREATE TRIGGER track_text_delete AFTER DELETE ON tracks BEGIN
        INSERT INTO track_text (track_text, rowid, title, artist, path) VALUES ('delete', old.id,
            mirsearch_lower(old.title), mirsearch_lower(old.artist), mirsearch_lower(old.path));
    END""",
    """CREATE TRIGGER track_text_update AFTER UPDATE OF title, artist, path ON tracks BEGIN
        INSERT INTO track_text (track_text, rowid, title, artist, path) VALUES ('delete', old.id,
            mirsearch_lower(old.title), mirsearch_lower(old.artist), mirsearch_lower(old.path));
        INSERT INTO track_text (rowid, title, artist, path) VALUES (new.id,
            mirsearch_lower(new.title), mirsearch_lower(new.artist), mirsearch_lower(new.path));
    END""",
    """INSERT INTO track_text (rowid, title, artist, path) SELECT id,
        mirsearch_lower(title), mirsearch_lower(artist), mirsearch_lower(path) FROM tracks""",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS track_text_insert",
    "DROP TRIGGER IF EXISTS track_text_delete",
    "DROP TRIGGER IF EXISTS track_text_update",
    "DROP TABLE IF EXISTS track_text",
)


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        _sqlite_upgrade(connection)
    elif connection.dialect.name == "postgresql":
        _postgresql_upgrade(connection)


def _sqlite_upgrade(connection: sa.Connection) -> None:
    try:
        with connection.begin_nested():
            for statement in SQLITE_UP:
                connection.exec_driver_sql(statement)
    except sa.exc.OperationalError as exc:
        if "trigram" not in str(exc) and "fts5" not in str(exc):
            raise
        version = connection.exec_driver_sql("SELECT sqlite_version()").scalar()
        log.warning(
            "SQLite %s has no FTS5 trigram tokenizer (3.34 and later do): text searches "
            "will read every track",
            version,
        )


def _postgresql_upgrade(connection: sa.Connection) -> None:
    try:
        with connection.begin_nested():
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning(
            "no pg_trgm extension (%s): text searches will read every track",
            str(exc.orig).strip().splitlines()[0],
        )
        return
    for column in COLUMNS:
        connection.exec_driver_sql(
            f"CREATE INDEX ix_tracks_{column}_trigrams ON tracks "
            f"USING gin (lower({column}) gin_trgm_ops)"
        )


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        for statement in SQLITE_DOWN:
            connection.exec_driver_sql(statement)
    elif connection.dialect.name == "postgresql":
        for column in COLUMNS:
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS ix_tracks_{column}_trigrams")
