"""Create and migrate the platform's databases (alembic trees under `db/migrations`)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from mbats.config import PROJECT_ROOT, get_settings
from mbats.dashboards.views import apply_views
from mbats.db import database_url, ensure_database

MIGRATIONS = PROJECT_ROOT / "db" / "migrations"


def _alembic_config(tree: str, database: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS / tree))
    cfg.set_main_option("sqlalchemy.url", database_url(database).replace("%", "%%"))
    return cfg


def upgrade_all() -> dict[str, bool]:
    """Create missing databases and migrate each to head; return {database: created}."""
    settings = get_settings()
    created: dict[str, bool] = {}
    for tree, database in (("secmaster", settings.secmaster_db), ("risk", settings.risk_db)):
        created[database] = ensure_database(database)
        command.upgrade(_alembic_config(tree, database), "head")
    created[settings.mlflow_db] = ensure_database(settings.mlflow_db)
    apply_views()  # Superset's `dash` views (db/views) and read-only role (db/roles)
    from mbats.db.roles import apply_service_roles

    apply_service_roles()  # a role per service with only the grants it needs (db/roles/services*.sql)
    return created
