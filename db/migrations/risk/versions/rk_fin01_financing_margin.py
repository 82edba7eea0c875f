"""Financing and margin of runs: one `financing` row per position and 17:00 New York rollover
(quote-currency amount, the rate that converted it, the account-currency amount), each trade's
financing, and the margin used at every equity point.

Revision ID: rk_fin01
Revises: rk_prov01
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "rk_fin01"
down_revision = "rk_prov01"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "financing",
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ts", TS, nullable=False, comment="the rollover: 17:00 New York"),
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("units", sa.Float, nullable=False, comment="signed position held over the rollover"),
        sa.Column("price", sa.Float, nullable=False, comment="mid at the rollover"),
        sa.Column("annual_rate", sa.Float, nullable=False, comment="the side's annual rate, decimal"),
        sa.Column("days", sa.SmallInteger, nullable=False, comment="days charged (Wednesday 3)"),
        sa.Column("amount_quote", sa.Float, nullable=False, comment="quote currency; negative = paid"),
        sa.Column("fx_rate", sa.Float, nullable=False, comment="account currency per quote currency unit"),
        sa.Column("amount", sa.Float, nullable=False, comment="account currency; negative = paid"),
        sa.PrimaryKeyConstraint("run_id", "ts", "instrument", name="financing_pkey"),
        comment="daily rollover financing booked by a run",
    )
    op.add_column("trades", sa.Column("financing", sa.Float, nullable=True,
                                      comment="account currency, over the trade's life"))
    op.add_column("equity", sa.Column("margin_used", sa.Float, nullable=True, comment="account currency"))


def downgrade() -> None:
    op.drop_column("equity", "margin_used")
    op.drop_column("trades", "financing")
    op.drop_table("financing")
