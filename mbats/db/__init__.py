"""Connections to the platform's PostgreSQL databases (secmaster, risk, mlflow)."""

from __future__ import annotations

from functools import lru_cache

from typing import TYPE_CHECKING

import psycopg2
from psycopg2 import sql

from mbats.config import get_settings
from mbats.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from sqlalchemy import Engine


def make_url(url: str):
    from sqlalchemy.engine import make_url as parse  # imported late: the CLI starts faster without it

    return parse(url)


def server_url() -> str:
    """URL of the PostgreSQL server (no database); starts the embedded one when none is configured."""
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    from mbats.db.embedded import ensure_running

    return ensure_running(settings.home / "pgdata", settings.embedded_pg_port)


def database_name(name: str) -> str:
    """The configured name of a platform database: "risk" → MBATS_RISK_DB, and so on.

    Callers use the logical names; only Settings knows the real ones, so migrations and writers
    always meet in the same database. Any other name (e.g. "postgres") is used as given."""
    settings = get_settings()
    logical = {"secmaster": settings.secmaster_db, "risk": settings.risk_db, "mlflow": settings.mlflow_db}
    return logical.get(name, name)


def database_url(name: str, driver: str = "postgresql+psycopg2") -> str:
    url = make_url(server_url()).set(drivername=driver, database=database_name(name))
    return url.render_as_string(hide_password=False)


def _describe(url: str) -> str:
    u = make_url(url)
    return f"{u.host}:{u.port or 5432}"


def connect(name: str) -> "psycopg2.extensions.connection":
    """A raw psycopg2 connection (COPY paths); the error names the setting to fix."""
    url = database_url(name, driver="postgresql")
    try:
        return psycopg2.connect(url, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise ServiceUnavailableError(
            f"cannot connect to PostgreSQL database '{database_name(name)}' at {_describe(url)} ({first}); "
            "check MBATS_DATABASE_URL or run `mbats db upgrade`"
        ) from None


def ensure_database(name: str) -> bool:
    """Create the database if it does not exist; return True if it was created."""
    url = database_url("postgres", driver="postgresql")
    try:
        conn = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise ServiceUnavailableError(
            f"cannot connect to PostgreSQL at {_describe(url)}: {str(exc).strip().splitlines()[0]}; "
            "check MBATS_DATABASE_URL"
        ) from None
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()


@lru_cache(maxsize=None)
def _engine(url: str) -> "Engine":
    from sqlalchemy import create_engine

    return create_engine(url, pool_pre_ping=True)


def engine(name: str) -> "Engine":
    return _engine(database_url(name))


def dispose_engines() -> None:
    """Drop cached engines (after settings change, e.g. in tests)."""
    _engine.cache_clear()
