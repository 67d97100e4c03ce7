"""The highest track id ever committed, kept in index_state: SQLite gives a new row the highest
id in its table plus one, so the id of a track pruned last went to the next new track, and a
client's reference to the old one (a stored match) named a different song. A new track's id is
now past this mark there (PostgreSQL's sequence never gives an id twice).

A catalog upgraded here takes the highest id it holds; one pruned before cannot say more.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "index_state",
        sa.Column("last_track_id", sa.Integer(), nullable=False, server_default="0"),
    )
    highest = "SELECT COALESCE(MAX(id), 0) FROM tracks"
    op.execute(sa.text(f"UPDATE index_state SET last_track_id = ({highest})"))


def downgrade() -> None:
    op.drop_column("index_state", "last_track_id")
