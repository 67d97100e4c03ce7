"""The number of indexed tracks filed under each genre, kept as tracks are filed, indexed,
un-indexed and deleted: the genre list (every view of the site's search and catalog pages,
`mirsearch genres`, `/api/genres`) had counted track_genres joined to tracks, one row a filing
(54 ms at 100,000 tracks on SQLite, bench/filters.py), and now reads a row a genre.

Kept by triggers, so every writer keeps it (the ORM, Core inserts, the cascade of a track
deleted): genre_counts.tracks is the number of track_genres rows whose track is indexed, and
each trigger adds what one row's change does to that number. A track deleted takes its genres'
counts down before its filings go (BEFORE DELETE), and the filings' own trigger then finds no
indexed track. The index on tracks.genre goes: no query has read it since 0010.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXED = "(SELECT status FROM tracks WHERE id = {row}.track_id) = 'indexed'"
COUNT_IN = (
    "INSERT INTO genre_counts (genre, tracks) {rows} "
    "ON CONFLICT (genre) DO UPDATE SET tracks = genre_counts.tracks + 1;"
)
COUNT_OUT = "UPDATE genre_counts SET tracks = tracks - 1 WHERE genre {genres};"
OF_TRACK = "IN (SELECT genre FROM track_genres WHERE track_id = {row}.id)"

SQLITE_UP = (
    f"""CREATE TRIGGER genre_counts_filed AFTER INSERT ON track_genres
    WHEN {INDEXED.format(row="new")} BEGIN
        {COUNT_IN.format(rows="VALUES (new.genre, 1)")}
    END""",
    f"""CREATE TRIGGER genre_counts_unfiled AFTER DELETE ON track_genres
    WHEN {INDEXED.format(row="old")} BEGIN
        {COUNT_OUT.format(genres="= old.genre")}
    END""",
    f"""CREATE TRIGGER genre_counts_refiled AFTER UPDATE ON track_genres BEGIN
        {COUNT_OUT.format(genres=f"= old.genre AND {INDEXED.format(row='old')}")}
        {COUNT_IN.format(rows=f"SELECT new.genre, 1 WHERE {INDEXED.format(row='new')}")}
    END""",
    f"""CREATE TRIGGER genre_counts_track_deleted BEFORE DELETE ON tracks
    WHEN old.status = 'indexed' BEGIN
        {COUNT_OUT.format(genres=OF_TRACK.format(row="old"))}
    END""",
    f"""CREATE TRIGGER genre_counts_track_indexed AFTER UPDATE OF status ON tracks
    WHEN new.status = 'indexed' AND old.status != 'indexed' BEGIN
        {COUNT_IN.format(rows="SELECT genre, 1 FROM track_genres WHERE track_id = new.id")}
    END""",
    f"""CREATE TRIGGER genre_counts_track_unindexed AFTER UPDATE OF status ON tracks
    WHEN old.status = 'indexed' AND new.status != 'indexed' BEGIN
        {COUNT_OUT.format(genres=OF_TRACK.format(row="new"))}
    END""",
)
SQLITE_TRIGGERS = (
    "filed",
    "unfiled",
    "refiled",
    "track_deleted",
    "track_indexed",
    "track_unindexed",
)

POSTGRESQL_UP = (
    f"""CREATE FUNCTION genre_counts_of_filing() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') AND {INDEXED.format(row="OLD")} THEN
            {COUNT_OUT.format(genres="= OLD.genre")}
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') AND {INDEXED.format(row="NEW")} THEN
            {COUNT_IN.format(rows="VALUES (NEW.genre, 1)")}
        END IF;
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION genre_counts_of_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF OLD.status = 'indexed' THEN
                {COUNT_OUT.format(genres=OF_TRACK.format(row="OLD"))}
            END IF;
            RETURN OLD;
        END IF;
        IF NEW.status = 'indexed' AND OLD.status <> 'indexed' THEN
            {COUNT_IN.format(rows="SELECT genre, 1 FROM track_genres WHERE track_id = NEW.id")}
        ELSIF OLD.status = 'indexed' AND NEW.status <> 'indexed' THEN
            {COUNT_OUT.format(genres=OF_TRACK.format(row="NEW"))}
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER genre_counts_filing AFTER INSERT OR UPDATE OR DELETE ON track_genres "
    "FOR EACH ROW EXECUTE FUNCTION genre_counts_of_filing()",
    "CREATE TRIGGER genre_counts_track_deleted BEFORE DELETE ON tracks "
    "FOR EACH ROW EXECUTE FUNCTION genre_counts_of_track()",
    "CREATE TRIGGER genre_counts_track_status AFTER UPDATE OF status ON tracks "
    "FOR EACH ROW EXECUTE FUNCTION genre_counts_of_track()",
)
POSTGRESQL_DOWN = (
    "DROP TRIGGER genre_counts_filing ON track_genres",
    "DROP TRIGGER genre_counts_track_deleted ON tracks",
    "DROP TRIGGER genre_counts_track_status ON tracks",
    "DROP FUNCTION genre_counts_of_filing()",
    "DROP FUNCTION genre_counts_of_track()",
)


def upgrade() -> None:
    op.create_table(
        "genre_counts",
        sa.Column("genre", sa.Text(), nullable=False),
        sa.Column("tracks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("genre", name=op.f("pk_genre_counts")),
    )
    connection = op.get_bind()
    connection.exec_driver_sql(
        "INSERT INTO genre_counts (genre, tracks) SELECT track_genres.genre, count(*) "
        "FROM track_genres JOIN tracks ON tracks.id = track_genres.track_id "
        "WHERE tracks.status = 'indexed' GROUP BY track_genres.genre"
    )
    statements = SQLITE_UP if connection.dialect.name == "sqlite" else POSTGRESQL_UP
    for statement in statements:
        connection.exec_driver_sql(statement)
    op.drop_index("ix_tracks_genre", table_name="tracks")


def downgrade() -> None:
    op.create_index("ix_tracks_genre", "tracks", ["genre"])
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER genre_counts_{name}")
    else:
        for statement in POSTGRESQL_DOWN:
            connection.exec_driver_sql(statement)
    op.drop_table("genre_counts")
