"""Least privilege inside PostgreSQL: a login role per kind of service (db/roles/services*.sql).

``apply_service_roles()`` runs after every migration (``upgrade_all``). A role is created when
missing; it can log in only once its password is set (MBATS_RUNNER_DB_PASSWORD,
MBATS_LOADER_DB_PASSWORD, MBATS_SIM_DB_PASSWORD), since every connection needs a password.
Where the migrating user may not manage roles (a managed PostgreSQL), existing roles still get
their grants and missing ones are reported.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from mbats.config import PROJECT_ROOT, get_settings

ROLES_DIR = PROJECT_ROOT / "db" / "roles"
SERVICE_ROLES = {"runner": "mbats_runner", "loader": "mbats_loader", "sim": "mbats_sim"}
log = logging.getLogger(__name__)


def role_passwords() -> dict[str, str | None]:
    settings = get_settings()
    secret = {"runner": settings.runner_db_password, "loader": settings.loader_db_password,
              "sim": settings.sim_db_password}
    return {SERVICE_ROLES[k]: v.get_secret_value() if v else None for k, v in secret.items()}


def _ensure_roles(conn, passwords: dict[str, str | None]) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
        may_manage = bool(cur.fetchone()[0])
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(SERVICE_ROLES.values()),))
        existing = {r[0] for r in cur.fetchall()}
        if not may_manage:
            missing = set(SERVICE_ROLES.values()) - existing
            if missing:
                log.warning("roles %s are missing and the migrating user may not create them", ", ".join(sorted(missing)))
            return not missing
        for role in SERVICE_ROLES.values():
            if role not in existing:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(sql.Identifier(role)))
            if passwords.get(role):
                cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)), (passwords[role],))
    return True


def apply_service_roles(passwords: dict[str, str | None] | None = None) -> bool:
    """Create the service roles and (re)apply their grants in risk and secmaster; False if skipped."""
    from mbats.db import connect

    passwords = role_passwords() if passwords is None else passwords
    settings = get_settings()
    names = {k: sql.Identifier(v) for k, v in SERVICE_ROLES.items()}
    for stem, database in (("secmaster", settings.secmaster_db), ("risk", settings.risk_db)):
        conn = connect(database)
        try:
            if not _ensure_roles(conn, passwords):
                conn.rollback()
                return False
            with conn.cursor() as cur:
                for file in ("services.sql", f"services_{stem}.sql"):
                    cur.execute(sql.SQL((ROLES_DIR / file).read_text()).format(
                        database=sql.Identifier(database), **names))
                # the migrating role keeps what it needs (it may not be the database owner)
                cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO CURRENT_USER")
                            .format(sql.Identifier(database)))
            conn.commit()
        finally:
            conn.close()
    return True
