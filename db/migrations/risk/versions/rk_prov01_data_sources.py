"""Runs record where their bars came from: `runs.data_sources`, one entry per security-master load
(vendor, synthetic or not, load id, bar count) per instrument.

Revision ID: rk_prov01
Revises: rk_live02
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "rk_prov01"
down_revision = "rk_live02"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("data_sources", postgresql.JSONB, nullable=True,
                                    comment="[{instrument, vendor, is_synthetic, load_id, source, kind, bars}]"))


def downgrade() -> None:
    op.drop_column("runs", "data_sources")
