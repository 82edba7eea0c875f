"""Research results beyond single runs: Monte Carlo of a run's trades and walk-forward optimisations.

* ``montecarlo``: one row per simulation of a run (method, paths, seed), the percentiles of the
  final equity and of the max drawdown over the paths, and the run's own figures beside them.
* ``walk_forwards``: one row per walk-forward (strategy, grid, windows, in-sample vs out-of-sample
  scores and their degradation, the stitched out-of-sample metrics);
  ``walk_forward_windows``: per instrument and window the chosen parameters and both scores;
  ``walk_forward_equity``: the stitched out-of-sample account value (per instrument and ``ALL``).

Revision ID: rk_res01
Revises: rk_ctl01
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "rk_res01"
down_revision = "rk_ctl01"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "montecarlo",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("method", sa.Text, nullable=False,
                  comment="shuffle (trade order), bootstrap (trades with replacement) or blocks (daily returns)"),
        sa.Column("paths", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("block_days", sa.Integer, nullable=False, server_default="0",
                  comment="block length of the blocks method (0: not a block method)"),
        sa.Column("samples", sa.Integer, nullable=False, comment="trades or daily returns resampled"),
        sa.Column("start_cash", sa.Float, nullable=False),
        sa.Column("final_equity_p5", sa.Float), sa.Column("final_equity_p50", sa.Float),
        sa.Column("final_equity_p95", sa.Float),
        sa.Column("max_drawdown_pct_p5", sa.Float, comment="percent below the running peak, positive as in run_metrics; p95 is the worst tail"),
        sa.Column("max_drawdown_pct_p50", sa.Float), sa.Column("max_drawdown_pct_p95", sa.Float),
        sa.Column("prob_loss", sa.Float, comment="share of paths ending below the start cash"),
        sa.Column("run_final_equity", sa.Float, comment="the run's own, for comparison"),
        sa.Column("run_max_drawdown_pct", sa.Float),
        sa.Column("percentiles", JSONB, nullable=False, server_default="{}",
                  comment="metric -> {percentile: value} for percentiles 1..99"),
        sa.Column("seconds", sa.Float),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("run_id", "method", "paths", "seed", "block_days", name="montecarlo_run_method_key"),
        comment="Monte Carlo of a run's trades or returns (mbats montecarlo)",
    )
    op.create_table(
        "walk_forwards",
        sa.Column("wf_id", sa.Text, primary_key=True),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("instruments", ARRAY(sa.Text), nullable=False),
        sa.Column("granularity", sa.Text, nullable=False),
        sa.Column("grid", JSONB, nullable=False, server_default="{}"),
        sa.Column("broker", JSONB, nullable=False, server_default="{}"),
        sa.Column("rank_by", sa.Text, nullable=False),
        sa.Column("train", sa.Text, nullable=False, comment="in-sample length, e.g. 90D"),
        sa.Column("test", sa.Text, nullable=False, comment="out-of-sample length and step"),
        sa.Column("anchored", sa.Boolean, nullable=False, comment="in-sample windows all start at the first bar"),
        sa.Column("windows", sa.Integer),
        sa.Column("is_mean", sa.Float, comment="mean in-sample rank_by score of the chosen configurations"),
        sa.Column("oos_mean", sa.Float, comment="mean out-of-sample rank_by score of the same configurations"),
        sa.Column("degradation", sa.Float, comment="is_mean - oos_mean (sign flipped for lower-is-better metrics)"),
        sa.Column("efficiency", sa.Float, comment="oos_mean / is_mean when is_mean > 0"),
        sa.Column("metrics", JSONB, comment="metrics of the stitched out-of-sample equity (all instruments)"),
        sa.Column("seconds", sa.Float),
        sa.Column("mlflow_run_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TS),
        comment="walk-forward optimisations (mbats walkforward, DAG walk_forward)",
    )
    op.create_table(
        "walk_forward_windows",
        sa.Column("wf_id", sa.Text, sa.ForeignKey("walk_forwards.wf_id", ondelete="CASCADE"), nullable=False),
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("window_no", sa.Integer, nullable=False),
        sa.Column("train_start", TS, nullable=False), sa.Column("train_end", TS, nullable=False),
        sa.Column("test_start", TS, nullable=False), sa.Column("test_end", TS, nullable=False),
        sa.Column("params", JSONB, nullable=False, comment="configuration chosen in-sample"),
        sa.Column("is_score", sa.Float), sa.Column("oos_score", sa.Float),
        sa.Column("is_metrics", JSONB), sa.Column("oos_metrics", JSONB),
        sa.Column("oos_trades", sa.Integer),
        sa.PrimaryKeyConstraint("wf_id", "instrument", "window_no", name="walk_forward_windows_pkey"),
    )
    op.create_table(
        "walk_forward_equity",
        sa.Column("wf_id", sa.Text, sa.ForeignKey("walk_forwards.wf_id", ondelete="CASCADE"), nullable=False),
        sa.Column("instrument", sa.Text, nullable=False, comment="ALL: the instruments together"),
        sa.Column("ts", TS, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("wf_id", "instrument", "ts", name="walk_forward_equity_pkey"),
    )


def downgrade() -> None:
    op.drop_table("walk_forward_equity")
    op.drop_table("walk_forward_windows")
    op.drop_table("walk_forwards")
    op.drop_table("montecarlo")
