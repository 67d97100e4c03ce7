"""Track tags: the model's best tags per track (real-music vocabulary of the student network).

Genres predicted by an earlier model (the synthetic-genre network) stay in place until the next
`mirsearch index`, which re-embeds every track because the model changed; the vector index
refuses to load with the new model until then, saying so.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 10:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (SQLite has had DROP COLUMN since 3.35), not a batch copy of the table:
# recreating `tracks` would fire the ON DELETE CASCADE of track_prints and lose every print.


def upgrade() -> None:
    op.add_column("tracks", sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("tracks", "tags")
