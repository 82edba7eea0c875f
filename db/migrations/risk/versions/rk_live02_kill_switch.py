"""Live trading state that must survive a restart: the kill switch and the day's loss baseline.

One row per trading account (``account_key``: environment and account id, plus the simulator's
URL for ``sim``). ``tripped`` stays true until ``mbats live reset-kill-switch`` clears it, which
records who and when (also as a ``risk_events`` row, action ``reset``).

Revision ID: rk_live02
Revises: rk_live01
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "rk_live02"
down_revision = "rk_live01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_kill_switch",
        sa.Column("account_key", sa.Text, primary_key=True, comment="environment:account[@simulator URL]"),
        sa.Column("day", sa.Date, comment="UTC trading day the baseline belongs to"),
        sa.Column("day_start_nav", sa.Float, comment="NAV at the day's first live bar"),
        sa.Column("tripped", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("tripped_at", sa.DateTime(timezone=True)),
        sa.Column("tripped_run_id", sa.BigInteger),
        sa.Column("reason", sa.Text),
        sa.Column("reset_at", sa.DateTime(timezone=True)),
        sa.Column("reset_by", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("live_kill_switch")
