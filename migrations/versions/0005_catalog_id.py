"""Catalog id: a random id the catalog gives itself, recorded in each index generation's meta
file, so that an index folder written for another catalog database (a MIRSEARCH_DATABASE_URL
pointed elsewhere, the home kept) is refused rather than read under this catalog's track ids.

A catalog upgraded here draws its id now; its generations saved before say none and load as
before, until the next `mirsearch index` writes one that does.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:30:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("index_state", sa.Column("catalog_id", sa.String(32), nullable=True))
    op.execute(sa.text("UPDATE index_state SET catalog_id = :id").bindparams(id=uuid.uuid4().hex))


def downgrade() -> None:
    op.drop_column("index_state", "catalog_id")
