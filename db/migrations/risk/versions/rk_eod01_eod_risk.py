"""End-of-day risk results: VaR/CVaR, exposure by currency, stress tests (mbats.risk.eod).

Revision ID: rk_eod01
Revises: rk0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "rk_eod01"
down_revision = "rk0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eod_risk",
        sa.Column("as_of", sa.Date, nullable=False, comment="business day the batch describes"),
        sa.Column("scope", sa.Text, nullable=False, comment="'portfolio' or 'run:<id>'"),
        sa.Column("kind", sa.Text, nullable=False, comment="var | cvar | exposure | stress | summary"),
        sa.Column("name", sa.Text, nullable=False,
                  comment="e.g. var_95_1d, a currency (exposure), a scenario (stress)"),
        sa.Column("value", sa.Float, comment="account currency (USD) unless details.unit says otherwise"),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("as_of", "scope", "kind", "name", name="eod_risk_pkey"),
        sa.CheckConstraint("kind IN ('var', 'cvar', 'exposure', 'stress', 'summary')", name="eod_risk_kind_known"),
    )
    op.create_index("eod_risk_kind_idx", "eod_risk", ["kind", "as_of"])


def downgrade() -> None:
    op.drop_table("eod_risk")
