"""Risk database: runs, orders, fills, trades, positions, equity curves, metrics.

Revision ID: rk0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "rk0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _run_fk() -> sa.Column:
    return sa.Column("run_id", sa.BigInteger, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_type", sa.Text, nullable=False, comment="backtest | sweep | paper | live"),
        sa.Column("mode", sa.Text, nullable=False, server_default="backtest"),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("params", JSONB, nullable=False, server_default="{}", comment="typed strategy parameters"),
        sa.Column("instruments", ARRAY(sa.Text), nullable=False),
        sa.Column("granularity", sa.Text, nullable=False),
        sa.Column("data_from", TS),
        sa.Column("data_to", TS),
        sa.Column("bars", sa.BigInteger, comment="bars processed (all instruments)"),
        sa.Column("cash", sa.Float, nullable=False),
        sa.Column("broker", JSONB, nullable=False, server_default="{}", comment="commission, spread, sizer"),
        sa.Column("code_version", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("error", sa.Text),
        sa.Column("started_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TS),
        sa.Column("duration_s", sa.Float),
        sa.Column("sweep_id", sa.Text, comment="groups the runs of one parameter sweep"),
        sa.Column("account", sa.Text),
        sa.Column("model_uri", sa.Text),
        sa.Column("model_version", sa.Text),
        sa.Column("mlflow_run_id", sa.Text),
        sa.Column("report_path", sa.Text),
        sa.CheckConstraint("status IN ('running', 'finished', 'failed', 'stopped')", name="runs_status_known"),
    )
    op.create_index("runs_strategy_idx", "runs", ["strategy", "started_at"])
    op.create_index("runs_sweep_idx", "runs", ["sweep_id"])

    op.create_table(
        "orders",
        _run_fk(),
        sa.Column("order_ref", sa.Text, nullable=False),
        sa.Column("client_order_id", sa.Text),
        sa.Column("parent_ref", sa.Text, comment="bracket parent for SL/TP legs"),
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("order_type", sa.Text, nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("price", sa.Float, comment="limit/stop price"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("updated_at", TS),
        sa.PrimaryKeyConstraint("run_id", "order_ref", name="orders_pkey"),
    )
    op.create_table(
        "fills",
        _run_fk(),
        sa.Column("fill_id", sa.Integer, nullable=False),
        sa.Column("order_ref", sa.Text, nullable=False),
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("size", sa.Float, nullable=False, comment="signed: + buy, - sell"),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("commission", sa.Float, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("run_id", "fill_id", name="fills_pkey"),
    )
    op.create_table(
        "trades",
        _run_fk(),
        sa.Column("trade_ref", sa.Text, nullable=False),
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("entry_ts", TS, nullable=False),
        sa.Column("entry_price", sa.Float, nullable=False),
        sa.Column("exit_ts", TS),
        sa.Column("exit_price", sa.Float),
        sa.Column("pnl", sa.Float, comment="gross P&L in account currency"),
        sa.Column("pnl_net", sa.Float, comment="after commission and spread"),
        sa.Column("commission", sa.Float),
        sa.Column("return_pct", sa.Float),
        sa.Column("mfe_pct", sa.Float, comment="maximum favourable excursion, % of entry"),
        sa.Column("mae_pct", sa.Float, comment="maximum adverse excursion, % of entry"),
        sa.Column("bars_held", sa.Integer),
        sa.Column("is_open", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("run_id", "trade_ref", name="trades_pkey"),
    )
    op.create_table(
        "positions",
        _run_fk(),
        sa.Column("ts", TS, nullable=False),
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("avg_price", sa.Float),
        sa.Column("market_price", sa.Float),
        sa.Column("unrealized_pnl", sa.Float),
        sa.PrimaryKeyConstraint("run_id", "ts", "instrument", name="positions_pkey"),
    )
    op.create_table(
        "equity",
        _run_fk(),
        sa.Column("ts", TS, nullable=False),
        sa.Column("cash", sa.Float, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("drawdown_pct", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "ts", name="equity_pkey"),
    )
    op.create_table(
        "run_metrics",
        _run_fk(),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("value", sa.Float),
        sa.PrimaryKeyConstraint("run_id", "metric", name="run_metrics_pkey"),
    )


def downgrade() -> None:
    for table in ("run_metrics", "equity", "positions", "trades", "fills", "orders", "runs"):
        op.drop_table(table)
