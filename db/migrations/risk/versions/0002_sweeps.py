"""Parameter sweeps: the sweep and every configuration's vectorised score (mbats.research).

Backtrader re-runs of a sweep are ordinary ``runs`` (run_type 'sweep', same sweep_id); this adds
the vectorised pre-screen scores, which are not full runs, and links each re-run to its score.

Revision ID: rk0002
Revises: rk_eod01
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "rk0002"
down_revision = "rk_eod01"  # chained after the EOD-risk table so the tree keeps one head
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("sweep_id", sa.Text, primary_key=True),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("instruments", ARRAY(sa.Text), nullable=False),
        sa.Column("granularity", sa.Text, nullable=False),
        sa.Column("grid", JSONB, nullable=False, server_default="{}", comment="parameter -> values"),
        sa.Column("broker", JSONB, nullable=False, server_default="{}", comment="cash, commission, spread, sizer"),
        sa.Column("rank_by", sa.Text, nullable=False),
        sa.Column("top_n", sa.Integer, nullable=False, comment="configurations re-run in backtrader"),
        sa.Column("tolerance_pct", sa.Float, nullable=False,
                  comment="max |total return difference| (percentage points) for vectorised and backtrader to agree"),
        sa.Column("configs", sa.Integer),
        sa.Column("workers", sa.Integer),
        sa.Column("vector_seconds", sa.Float),
        sa.Column("backtrader_seconds", sa.Float),
        sa.Column("mlflow_run_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "sweep_scores",
        sa.Column("sweep_id", sa.Text, sa.ForeignKey("sweeps.sweep_id", ondelete="CASCADE"), nullable=False),
        sa.Column("config_id", sa.Integer, nullable=False),
        sa.Column("params", JSONB, nullable=False),
        sa.Column("metrics", JSONB, nullable=False, comment="vectorised metrics, as in run_metrics"),
        sa.Column("trades", sa.Integer),
        sa.Column("trades_sha256", sa.Text),
        sa.Column("seconds", sa.Float),
        sa.Column("rank", sa.Integer, comment="1 = best by the sweep's rank_by metric"),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="SET NULL"),
                  comment="the backtrader re-run, for the top configurations"),
        sa.Column("agrees", sa.Boolean, comment="vectorised and backtrader agree within tolerance"),
        sa.Column("difference", JSONB, comment="what differed when they do not agree"),
        sa.PrimaryKeyConstraint("sweep_id", "config_id", name="sweep_scores_pkey"),
    )


def downgrade() -> None:
    op.drop_table("sweep_scores")
    op.drop_table("sweeps")
