"""Runs on a registered model name it fully: `runs.model_name` and `runs.model_run_id` (the MLflow run
that trained the version) next to `model_uri` and `model_version`.

Revision ID: rk_lin01
Revises: rk_fin01
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "rk_lin01"
down_revision = "rk_fin01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("model_name", sa.Text, nullable=True, comment="registered model the run traded on"))
    op.add_column("runs", sa.Column("model_run_id", sa.Text, nullable=True,
                                    comment="MLflow run that trained model_version (its data, metrics, code)"))


def downgrade() -> None:
    op.drop_column("runs", "model_run_id")
    op.drop_column("runs", "model_name")
