"""The `dash` views (db/views/*.sql) and Superset's read-only role (db/roles/*.sql).

`apply_views()` runs after every `mbats db upgrade` (from `mbats.db.migrate.upgrade_all`). Each
database's `dash` schema is dropped and rebuilt in one transaction, so the SQL files are the
whole truth and a view may change its columns; then the read-only role gets SELECT on it.

Settings (environment):
  MBATS_SUPERSET_DB_USER       read-only role Superset logs in as (default ``mbats_superset``)
  MBATS_SUPERSET_DB_PASSWORD   its password; unset: the role has none (fine for the embedded
                               PostgreSQL, which trusts loopback connections)
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from mbats.config import PROJECT_ROOT, Settings, get_settings

VIEWS_DIR = PROJECT_ROOT / "db" / "views"
ROLES_DIR = PROJECT_ROOT / "db" / "roles"
DEFAULT_ROLE = "mbats_superset"
log = logging.getLogger(__name__)


def readonly_role() -> str:
    return Settings().superset_db_user or DEFAULT_ROLE


def view_databases() -> dict[str, str]:
    """{views file stem: database name}."""
    settings = get_settings()
    return {"risk": settings.risk_db, "secmaster": settings.secmaster_db}


def ensure_role(conn, role: str, password: str | None) -> bool:
    """Create the login role if missing, set its password, make its sessions read-only.

    Returns False (and changes nothing) when the role is missing and the migrating user may not
    create roles, e.g. on a managed PostgreSQL where an administrator creates it."""
    with conn.cursor() as cur:
        cur.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
        is_super, may_create = cur.fetchone()
        may_manage = bool(is_super or may_create)
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        exists = cur.fetchone() is not None
        if not may_manage:
            if not exists:
                log.warning("role %s does not exist and %s may not create it; Superset's read-only access "
                            "is not granted", role, "the migrating user")
            return exists
        if not exists:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        # Only a superuser may name the SUPERUSER/CREATEDB attributes, even to take them away (the
        # compose stack's mbats role has just CREATEROLE); a role it creates has none of them.
        attributes = "NOSUPERUSER NOCREATEDB NOCREATEROLE " if is_super else ""
        cur.execute(sql.SQL("ALTER ROLE {} LOGIN " + attributes + "PASSWORD %s")
                    .format(sql.Identifier(role)), (password,))
        cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(role)))
    return True


def apply_views(role: str | None = None, password: str | None = None) -> dict[str, list[str]]:
    """Rebuild the `dash` views in the risk and secmaster databases; return {database: views}."""
    from mbats.db import connect

    role = role or readonly_role()
    if password is None:
        secret = Settings().superset_db_password
        password = secret.get_secret_value() if secret else None
    grants = (ROLES_DIR / "superset_readonly.sql").read_text()
    done: dict[str, list[str]] = {}
    for stem, database in view_databases().items():
        conn = connect(database)
        try:
            role_ok = ensure_role(conn, role, password)
            with conn.cursor() as cur:
                cur.execute("DROP SCHEMA IF EXISTS dash CASCADE")
                cur.execute((VIEWS_DIR / f"{stem}.sql").read_text())
                if role_ok:
                    cur.execute(sql.SQL(grants).format(role=sql.Identifier(role), database=sql.Identifier(database)))
                cur.execute("SELECT table_name FROM information_schema.views WHERE table_schema = 'dash' ORDER BY 1")
                done[database] = [r[0] for r in cur.fetchall()]
            conn.commit()
        finally:
            conn.close()
    return done


def view_columns(database: str) -> dict[str, list[tuple[str, str]]]:
    """{view: [(column, PostgreSQL type)]} of the `dash` schema of a database, in column order."""
    from mbats.db import connect

    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'dash' AND c.relkind = 'v' AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY c.relname, a.attnum"
            )
            out: dict[str, list[tuple[str, str]]] = {}
            for view, column, typ in cur.fetchall():
                out.setdefault(view, []).append((column, typ))
            return out
    finally:
        conn.close()
