"""An index on tracks.duplicate_of: `match` asks which tracks are versions of the ones a clip
confirms (those whose duplicate_of names them), once per upload, and without the index that
question reads the whole table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_tracks_duplicate_of"), "tracks", ["duplicate_of"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_tracks_duplicate_of"), table_name="tracks")
