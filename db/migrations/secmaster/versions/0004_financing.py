"""Financing and margin terms per instrument: annual long/short rollover rates, margin rate and the
days charged per weekday (OANDA's ``financingDaysOfWeek``), from an effective date.

Revision ID: sm0004
Revises: sm0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "sm0004"
down_revision = "sm0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instrument_financing",
        sa.Column("instrument_id", sa.Integer, sa.ForeignKey("instruments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False,
                  comment="terms apply from here until the next row; 1970-01-01 = all history"),
        sa.Column("long_rate", sa.Float, nullable=False, comment="annual, decimal; negative = a long pays"),
        sa.Column("short_rate", sa.Float, nullable=False, comment="annual, decimal; negative = a short pays"),
        sa.Column("margin_rate", sa.Float, nullable=False, comment="margin = |units| x price x rate"),
        sa.Column("days_charged", postgresql.ARRAY(sa.SmallInteger), nullable=False,
                  server_default="{1,1,3,1,1,0,0}", comment="days charged at 17:00 New York, Monday … Sunday"),
        sa.Column("source", sa.Text, nullable=False, comment="file:<name>, oanda:<environment>"),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("instrument_id", "effective_from", name="instrument_financing_pkey"),
        sa.CheckConstraint("abs(long_rate) < 1 AND abs(short_rate) < 1", name="financing_rates_annual_decimal"),
        sa.CheckConstraint("margin_rate > 0 AND margin_rate <= 1", name="financing_margin_rate_range"),
        sa.CheckConstraint("cardinality(days_charged) = 7", name="financing_days_week"),
        comment="rollover (financing) and margin terms per instrument over time",
    )


def downgrade() -> None:
    op.drop_table("instrument_financing")
