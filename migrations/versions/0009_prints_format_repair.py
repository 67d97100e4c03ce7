"""Repair catalogs that skipped 0003: add track_prints.format and convert their format-1 prints.

The versions of 2026-11-29 between the student network and the compact prints shipped 0004 on top
of 0002; 0003 was later put beneath it. A catalog those versions made is stamped 0004 (or later,
once upgraded) without ever having run 0003: its prints have no format column and are still the
1-byte format, and indexing it failed on the missing column. Here 0003's upgrade runs on exactly
those catalogs; every other catalog has the column and is left as it is.

Downgrading writes every format-4 print as format 3 (the same 5-bit values as bit planes, so
nothing is lost): every version since format 3 reads it, and those at 0004 and the first at 0005
read no format 4. The column itself belongs to 0003, whose downgrade removes it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from mirsearch import fingerprint

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("track_prints")}
    if "format" not in columns:
        context.script.get_revision("0003").module.upgrade()


def downgrade() -> None:
    compact_prints = context.script.get_revision("0003").module
    compact_prints._convert(compact_prints.PRINTS.c.format == 4, _to_format_3)


def _to_format_3(data: bytes, bands: int, format: int) -> dict:
    print_ = fingerprint.decode(data, format=format)
    return {"data": fingerprint.encode(print_, format=3), "format": 3, "bands": bands}
