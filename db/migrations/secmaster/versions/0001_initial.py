"""Security master: instruments and bars of any granularity.

Revision ID: sm0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "sm0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("symbol", sa.Text, nullable=False, unique=True, comment="e.g. EUR_USD"),
        sa.Column("instrument_type", sa.Text, nullable=False, server_default="CURRENCY"),
        sa.Column("base_currency", sa.CHAR(3), nullable=False),
        sa.Column("quote_currency", sa.CHAR(3), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("pip_size", sa.Float, nullable=False, comment="price of one pip, e.g. 0.0001"),
        sa.Column("display_precision", sa.Integer),
        sa.Column("vendor", sa.Text, nullable=False, comment="where the bars come from, e.g. oanda"),
        sa.Column("source", sa.Text, comment="file, package or endpoint the data came from"),
        sa.Column("is_synthetic", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "bars",
        # No foreign key on purpose: PostgreSQL checks it with one trigger call per row, which made
        # bulk loads 4x slower. Writers resolve instrument ids through `instruments` first.
        sa.Column("instrument_id", sa.Integer, nullable=False),
        sa.Column("granularity", sa.Text, nullable=False, comment="OANDA code: S5 … M1 … H1 … D, W, M"),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, comment="bar open time, UTC"),
        sa.Column("open", sa.Float, nullable=False),
        sa.Column("high", sa.Float, nullable=False),
        sa.Column("low", sa.Float, nullable=False),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("volume", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("instrument_id", "granularity", "ts", name="bars_pkey"),
        sa.CheckConstraint("high >= low AND open BETWEEN low AND high AND close BETWEEN low AND high", name="bars_ohlc_consistent"),
        sa.CheckConstraint("volume >= 0", name="bars_volume_nonnegative"),
    )


def downgrade() -> None:
    op.drop_table("bars")
    op.drop_table("instruments")
