"""Live/paper trading: risk_events (pre-trade breaches, kill switch) and runs.session_key.

``session_key`` names one trading session (deployment + window) so a restarted runner resumes
the same run instead of opening a new one; ``risk_events`` keeps the columns the Superset view
``dash.risk_events`` reads (ts, run_id, rule, instrument, detail, action).

Revision ID: rk_live01
Revises: rk0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "rk_live01"
down_revision = "rk0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("session_key", sa.Text, comment="paper/live: resumable session id"))
    op.create_index("runs_session_key_idx", "runs", ["session_key"])
    op.create_table(
        "risk_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="CASCADE")),
        sa.Column("rule", sa.Text, nullable=False,
                  comment="max_units | max_gross_exposure | max_orders_per_minute | max_daily_loss"),
        sa.Column("instrument", sa.Text),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False, comment="blocked | kill_switch"),
    )
    op.create_index("risk_events_run_idx", "risk_events", ["run_id", "ts"])


def downgrade() -> None:
    op.drop_table("risk_events")
    op.drop_index("runs_session_key_idx", table_name="runs")
    op.drop_column("runs", "session_key")
