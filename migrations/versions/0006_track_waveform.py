"""Track waveforms: each track's peak envelope (400 bytes, features.peak_envelope), computed when
it is indexed, so that its page draws the waveform without decoding the file (a 10-minute track
took 3 s a view), and which of its index windows lie in a pause (one bit a window), which
`similar` leaves out. A table of its own, as the prints have: in the track rows the 400 bytes
cost SQLite 2 kB a track (rows that had shared a page no longer did).

Tracks indexed before have none until they are indexed again; their page decodes the file, as
every page did.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "track_waveforms",
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("peaks", sa.LargeBinary(), nullable=False),
        sa.Column("quiet", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["tracks.id"],
            name=op.f("fk_track_waveforms_track_id_tracks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("track_id", name=op.f("pk_track_waveforms")),
    )


def downgrade() -> None:
    op.drop_table("track_waveforms")
