"""PostgreSQL: an index on tracks (status, id). A genre filter or a page of a genre joins the
indexed tracks to the genre's filings, and PostgreSQL's index on status holds no ids, so it
read every track's row from the table (at 100,000 tracks, vacuumed, the ids of a genre of
40,445 tracks in 93 ms, a page of it with its count in 55, a rare genre's in 13); from
(status, id) alone, merged with track_genres' index in id order, 38, 21 and 5.6 ms.

SQLite gets none: its index on status holds each row's id already (the rowid), and given
(status, id) its planner chose plans that took a page of a genre from 28 to 50 ms and a text
search from 13 to 19 (bench/filters.py's catalog, 100,000 tracks). Like the trigram indexes of
0011, the index is not among the models: tests/test_schema.py leaves it out of the comparison.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 00:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_tracks_status_id", "tracks", ["status", "id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_tracks_status_id", table_name="tracks")
