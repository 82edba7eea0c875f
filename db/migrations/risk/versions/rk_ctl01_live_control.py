"""Remote control of running paper/live sessions: ``mbats live stop|flatten`` requests.

A request is a row; the session polls the table for rows of its run every couple of seconds and
stamps ``handled_at``. A table (not a signal to a pid) because the command and the runner usually
run in different containers or hosts (an Airflow task, a Celery worker, an operator's laptop): the
risk DB is the one place both reach.

Revision ID: rk_ctl01
Revises: rk_lin01
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "rk_ctl01"
down_revision = "rk_lin01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_control",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("handled_at", sa.DateTime(timezone=True), comment="when the session picked the request up"),
        sa.CheckConstraint("command IN ('stop', 'flatten')", name="live_control_command_known"),
    )


def downgrade() -> None:
    op.drop_table("live_control")
