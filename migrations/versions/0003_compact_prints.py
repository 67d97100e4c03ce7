"""Compact prints: track_prints.format, and every 1-byte print (format 1) converted in place.

A format-1 print holds one byte per kept mel band and 32 fps frame; the compact formats
(mirsearch.fingerprint.encode, format 2 and later) average band pairs, quantise each frame's
deviation from its mean to a few bits and deflate it. The conversion writes the newest compact
format and needs no audio, so no track has to be indexed again. Downgrading writes format-1 bytes
back from every compact print, whatever its format (each band pair repeated, values at the
compact precision): an older version then reads them, verifying on the coarser print.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

from mirsearch import fingerprint

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500  # prints converted per round trip
PRINTS = sa.table(
    "track_prints",
    sa.column("track_id", sa.Integer),
    sa.column("bands", sa.Integer),
    sa.column("data", sa.LargeBinary),
    sa.column("format", sa.Integer),
)
FORMAT_1_FLOOR = 128.0  # a downgraded print's frame mean sits mid-byte


def upgrade() -> None:
    with op.batch_alter_table("track_prints") as batch:
        batch.add_column(sa.Column("format", sa.Integer(), nullable=False, server_default="1"))
    _convert(PRINTS.c.format == 1, _to_compact)


def downgrade() -> None:
    _convert(PRINTS.c.format != 1, _to_format_1)
    with op.batch_alter_table("track_prints") as batch:
        batch.drop_column("format")


def _to_compact(data: bytes, bands: int, _format: int) -> dict:
    compact = fingerprint.from_format_1(data, bands)
    return {
        "data": fingerprint.encode(compact),
        "format": fingerprint.FORMAT,
        "bands": len(compact),
    }


def _to_format_1(data: bytes, _bands_stored: int, format: int) -> dict:
    compact = fingerprint.decode(data, format=format)
    wide = np.repeat(np.repeat(compact, fingerprint.BAND_GROUP, axis=0), fingerprint.POOL // 2, 1)
    one_byte = np.clip(np.round(wide + FORMAT_1_FLOOR), 0, 255).astype(np.uint8)
    return {"data": one_byte.tobytes(), "format": 1, "bands": one_byte.shape[0]}


def _convert(which, convert) -> None:
    """Rewrite every print `which` selects, BATCH rows per round trip."""
    connection = op.get_bind()
    ids = connection.scalars(sa.select(PRINTS.c.track_id).where(which).order_by("track_id")).all()
    update = (
        PRINTS.update()
        .where(PRINTS.c.track_id == sa.bindparam("id"))
        .values(
            data=sa.bindparam("new_data"),
            bands=sa.bindparam("new_bands"),
            format=sa.bindparam("new_format"),
        )
    )
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        rows = connection.execute(
            sa.select(PRINTS.c.track_id, PRINTS.c.bands, PRINTS.c.data, PRINTS.c.format).where(
                PRINTS.c.track_id.in_(chunk)
            )
        )
        values = []
        for track_id, bands, data, format_ in rows:
            new = convert(bytes(data), bands, format_)
            values.append(
                {
                    "id": track_id,
                    "new_data": new["data"],
                    "new_bands": new["bands"],
                    "new_format": new["format"],
                }
            )
        if values:
            connection.execute(update, values)
