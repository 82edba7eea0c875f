"""Bars: optional bid/ask OHLC next to the mid prices (filled by `mbats data download --price MBA`).

Revision ID: sm0002
Revises: sm0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "sm0002"
down_revision = "sm0001"
branch_labels = None
depends_on = None

SIDE_COLUMNS = [f"{side}_{field}" for side in ("bid", "ask") for field in ("open", "high", "low", "close")]


def upgrade() -> None:
    # nullable, no default: adding them rewrites nothing and costs nothing for mid-only rows
    for name in SIDE_COLUMNS:
        op.add_column("bars", sa.Column(name, sa.Float, nullable=True))


def downgrade() -> None:
    for name in reversed(SIDE_COLUMNS):
        op.drop_column("bars", name)
