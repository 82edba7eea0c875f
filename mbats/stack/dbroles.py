"""Least privilege on the local stack: each service connects as its own PostgreSQL role, as in compose.

| role            | used by                                   | rights                                          |
| --------------- | ----------------------------------------- | ----------------------------------------------- |
| airflow         | Airflow's metadata (SQL_ALCHEMY_CONN)     | owns the ``airflow`` database only              |
| mlflow          | MLflow's backend store and basic-auth DB  | owns ``mlflow`` and ``mlflow_auth`` only        |
| superset        | Superset's metadata                       | owns the ``superset`` database only             |
| mbats_superset  | the dashboards (Superset's data source)   | SELECT on the ``dash`` views (db/roles)         |
| mbats_tasks     | Airflow tasks, the CLI via client.env     | member of mbats_runner + mbats_loader           |
| mbats_sim       | the OANDA simulator                       | reads bars (db/roles/services.sql)              |

Only the stack's init (``stack up``, as the server's superuser) creates databases, roles and the
schemas of secmaster and risk. Airflow tasks both download bars and run backtests in one
environment (LocalExecutor), so their role is the union of the loader's and the runner's rights,
neither of which may change a schema. Passwords: the compose variables when set
(AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD, SUPERSET_DB_PASSWORD, MBATS_SUPERSET_DB_PASSWORD,
MBATS_RUNNER/LOADER/SIM_DB_PASSWORD), else generated once into ``MBATS_STACK_DIR/db_passwords.json``
(0600).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

# role → the databases it owns
OWNERS = {"airflow": ("airflow",), "mlflow": ("mlflow", "mlflow_auth"), "superset": ("superset",)}
TASKS = "mbats_tasks"
# what a role is for → the environment variable (shared with docker compose) that may give its password
PASSWORD_ENV = {"airflow": "AIRFLOW_DB_PASSWORD", "mlflow": "MLFLOW_DB_PASSWORD", "superset": "SUPERSET_DB_PASSWORD",
                "readonly": "MBATS_SUPERSET_DB_PASSWORD", "runner": "MBATS_RUNNER_DB_PASSWORD",
                "loader": "MBATS_LOADER_DB_PASSWORD", "sim": "MBATS_SIM_DB_PASSWORD", "tasks": "MBATS_TASKS_DB_PASSWORD"}


def role_names() -> dict[str, str]:
    """What a role is for → its name (the read-only role's name is a setting, MBATS_SUPERSET_DB_USER)."""
    from mbats.dashboards.views import readonly_role
    from mbats.db.roles import SERVICE_ROLES

    return {**{k: k for k in OWNERS}, "readonly": readonly_role(), **SERVICE_ROLES, "tasks": TASKS}


def given_passwords() -> dict[str, str | None]:
    """Passwords set in the environment or .env (the compose variables), by what the role is for."""
    from dotenv import dotenv_values

    env = dotenv_values(".env") | dict(os.environ)
    return {k: env.get(var) or None for k, var in PASSWORD_ENV.items()}


def passwords(state: Path, given: dict[str, str | None]) -> dict[str, str]:
    """Every role's password: ``given`` (settings) where set, else generated once and kept in ``state``."""
    path = state / "db_passwords.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    out = {role: given.get(role) or stored.get(role) or secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
           for role in PASSWORD_ENV}
    keep = {role: pw for role, pw in out.items() if not given.get(role)}
    if keep != stored:
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(keep, f)
        path.chmod(0o600)
    return out


def role_url(server_url: str, role: str, password: str) -> str:
    """``server_url`` (postgresql://user:pw@host:port) with another user and password."""
    scheme, rest = server_url.split("://", 1)
    return f"{scheme}://{quote(role, safe='')}:{quote(password, safe='')}@{rest.rsplit('@', 1)[-1]}"


def may_manage_roles(superuser_url: str) -> bool:
    conn = psycopg2.connect(superuser_url + "/postgres", connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


def _role(cur, role: str, password: str, inherit: bool = False) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if not cur.fetchone():
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN " + ("INHERIT" if inherit else "NOINHERIT"))
                    .format(sql.Identifier(role)))
    cur.execute("SET LOCAL password_encryption = 'scram-sha-256'")
    cur.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s")
                .format(sql.Identifier(role)), (password,))


# Objects in a service database that an older stack created as the superuser are handed to the
# service's role, so its own migrations keep working (tables bring their sequences and indexes).
_HAND_OVER = """
SELECT format('ALTER %%s %%I.%%I OWNER TO %%I',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             ELSE 'TABLE' END, n.nspname, c.relname, %(role)s)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relowner <> %(role)s::regrole
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('ALTER TYPE %%I.%%I OWNER TO %%I', n.nspname, t.typname, %(role)s)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND t.typtype IN ('e', 'd', 'r', 'm') AND t.typowner <> %(role)s::regrole
UNION ALL
SELECT format('ALTER ROUTINE %%s OWNER TO %%I', p.oid::regprocedure, %(role)s)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.proowner <> %(role)s::regrole
UNION ALL
SELECT format('ALTER SCHEMA %%I OWNER TO %%I', n.nspname, %(role)s)
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg_%%'
  AND n.nspowner <> %(role)s::regrole
"""


def _own_database(superuser_url: str, database: str, owner: str) -> None:
    conn = psycopg2.connect(superuser_url + "/postgres", connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            db, role = sql.Identifier(database), sql.Identifier(owner)
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, role))
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    finally:
        conn.close()
    conn = psycopg2.connect(f"{superuser_url}/{database}", connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(_HAND_OVER, {"role": owner})
            for (statement,) in cur.fetchall():
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def apply(superuser_url: str, pw: dict[str, str], mlflow_db: str = "mlflow") -> None:
    """Create/refresh the owner roles with their databases, and the tasks role. Runs after the
    migrations, which create mbats_runner/loader/sim (mbats.db.roles) and the read-only dashboards
    role (mbats.dashboards.views) with their grants and the passwords given to them there."""
    conn = psycopg2.connect(superuser_url + "/postgres", connect_timeout=10)
    try:
        with conn.cursor() as cur:
            names = role_names()
            for kind, role in names.items():  # the migrations made runner/loader/sim/readonly: passwords here
                _role(cur, role, pw[kind], inherit=kind == "tasks")
            tasks = sql.Identifier(names["tasks"])
            cur.execute(sql.SQL("ALTER ROLE {} INHERIT").format(tasks))
            cur.execute(sql.SQL("GRANT {}, {} TO {}").format(sql.Identifier(names["runner"]),
                                                            sql.Identifier(names["loader"]), tasks))
        conn.commit()
    finally:
        conn.close()
    for owner, databases in OWNERS.items():
        for database in databases:
            _own_database(superuser_url, mlflow_db if database == "mlflow" else database, owner)
