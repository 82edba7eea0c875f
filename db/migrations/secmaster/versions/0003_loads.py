"""Provenance per load: every load (file import, sample, download) is a row in `loads` (vendor,
source, synthetic or not) and every bar points at the load that last wrote its values.

Bars written before this migration keep load_id NULL; readers fall back to the instrument's vendor.

Revision ID: sm0003
Revises: sm0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "sm0003"
down_revision = "sm0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False, comment="file, sample, download"),
        sa.Column("vendor", sa.Text, nullable=False, comment="who produced the prices: oanda, oanda-sim, a file's vendor"),
        sa.Column("source", sa.Text, comment="file names, package data or endpoint"),
        sa.Column("is_synthetic", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("instrument_id", sa.Integer, sa.ForeignKey("instruments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("granularity", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0", comment="bars inserted or updated"),
        sa.Column("first_ts", sa.DateTime(timezone=True)),
        sa.Column("last_ts", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        comment="one row per load of bars; bars.load_id says which load wrote a bar",
    )
    # nullable, no default: adding it rewrites nothing; old bars stay NULL (= the instrument's vendor)
    op.add_column("bars", sa.Column("load_id", sa.Integer, sa.ForeignKey("loads.id", ondelete="SET NULL"),
                                    nullable=True))


def downgrade() -> None:
    op.drop_column("bars", "load_id")
    op.drop_table("loads")
