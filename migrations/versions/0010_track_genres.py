"""The genres each track is filed under, one row each with an index on the genre: a genre filter
and the genre counts had matched every row's predicted genre and split every tag's, in
proportion to the catalog (at 100,000 tracks on SQLite a rare genre's tracks in 139 ms, the
genre list in 258; bench/filters.py), now they look the genre up (3 and 55 ms).

Filled here from the tracks' genre and tag_genre columns (schema.filed_genres), in batches.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mirsearch.schema import filed_genres

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000  # tracks read and filed a statement at a time


def upgrade() -> None:
    genres = op.create_table(
        "track_genres",
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("genre", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["tracks.id"],
            name=op.f("fk_track_genres_track_id_tracks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("track_id", "genre", name=op.f("pk_track_genres")),
    )
    op.create_index("ix_track_genres_genre_track_id", "track_genres", ["genre", "track_id"])
    tracks = sa.table("tracks", sa.column("id"), sa.column("genre"), sa.column("tag_genre"))
    connection, last = op.get_bind(), -1
    while True:
        batch = connection.execute(
            sa.select(tracks.c.id, tracks.c.genre, tracks.c.tag_genre)
            .where(tracks.c.id > last)
            .order_by(tracks.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        rows = [
            {"track_id": track_id, "genre": name}
            for track_id, genre, tag_genre in batch
            for name in filed_genres(genre, tag_genre)
        ]
        if rows:
            connection.execute(sa.insert(genres), rows)
        last = batch[-1][0]


def downgrade() -> None:
    op.drop_index("ix_track_genres_genre_track_id", table_name="track_genres")
    op.drop_table("track_genres")
