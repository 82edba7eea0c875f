"""Least privilege on the local stack (issue 17): after the stack's database preparation (what
`stack up` runs against its embedded PostgreSQL), connect as each service's role and try what it
must not do, and what it must. The session's real embedded server (tests/conftest.py) plays the
stack's; a service database left by an older stack (objects owned by the superuser) is handed over."""

from __future__ import annotations

import psycopg2
import pytest

DENIED = ("42501",)  # insufficient_privilege: permission denied, must be owner, …
SERVICE_DBS = ("airflow", "mlflow", "mlflow_auth", "superset", "secmaster", "risk")


@pytest.fixture(scope="module")
def stack(pg_server, tmp_path_factory):
    from mbats.config import reset_settings_cache
    from mbats.stack.local import Stack

    mp = pytest.MonkeyPatch()
    mp.setenv("MBATS_STACK_DIR", str(tmp_path_factory.mktemp("stack-roles")))
    for var in ("AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "SUPERSET_DB_PASSWORD", "MBATS_SUPERSET_DB_PASSWORD",
                "MBATS_RUNNER_DB_PASSWORD", "MBATS_LOADER_DB_PASSWORD", "MBATS_SIM_DB_PASSWORD"):
        mp.delenv(var, raising=False)
    reset_settings_cache()
    stack = Stack.load()
    # an Airflow database from a stack that still ran everything as the superuser
    admin = psycopg2.connect(stack.database_url() + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
        if not cur.fetchone():
            cur.execute("CREATE DATABASE airflow")
    admin.close()
    old = psycopg2.connect(stack.database_url() + "/airflow")
    with old, old.cursor() as cur:
        cur.execute("CREATE TYPE legacy_state AS ENUM ('a', 'b')")
        cur.execute("CREATE TABLE legacy_runs (id serial PRIMARY KEY, state legacy_state)")
        cur.execute("CREATE VIEW legacy_view AS SELECT id FROM legacy_runs")
    old.close()
    stack._prepare_databases(lambda *_: None)
    yield stack
    mp.undo()
    reset_settings_cache()


def connect(stack, kind: str, database: str):
    from urllib.parse import unquote, urlparse

    url = urlparse(stack.service_url(kind))
    conn = psycopg2.connect(host=url.hostname, port=url.port, user=unquote(url.username),
                            password=unquote(url.password), dbname=database, connect_timeout=10)
    conn.autocommit = True
    return conn


def denied(conn, statement: str) -> None:
    with conn.cursor() as cur, pytest.raises(psycopg2.Error) as info:
        cur.execute(statement)
    assert info.value.pgcode in DENIED, (statement, info.value.pgcode, info.value.pgerror)


def allowed(conn, statement: str) -> None:
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(statement)
        cur.execute("ROLLBACK")  # proved allowed; leave nothing behind


def cannot_connect(stack, kind: str, database: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        connect(stack, kind, database)


NOT_FOR_ANYONE = ("CREATE ROLE evil LOGIN SUPERUSER", "CREATE DATABASE evil", "COPY (SELECT 1) TO PROGRAM 'id'",
                  "ALTER SYSTEM SET log_statement = 'none'")


@pytest.mark.parametrize("kind,owned", [("airflow", ("airflow",)), ("mlflow", ("mlflow", "mlflow_auth")),
                                        ("superset", ("superset",))])
def test_metadata_roles_own_their_databases_and_nothing_else(stack, kind, owned):
    for database in owned:
        conn = connect(stack, kind, database)
        try:
            allowed(conn, "CREATE TABLE own_probe (i int)")  # their own migrations need DDL here
            for statement in NOT_FOR_ANYONE:
                denied(conn, statement)
            with conn.cursor() as cur:
                cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
                assert cur.fetchone() == (False, False, False)
        finally:
            conn.close()
    for database in set(SERVICE_DBS) - set(owned):
        cannot_connect(stack, kind, database)


def test_an_older_stacks_objects_are_handed_to_the_service_role(stack):
    conn = connect(stack, "airflow", "airflow")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
                        "WHERE c.relname IN ('legacy_runs', 'legacy_runs_id_seq', 'legacy_view')")
            assert dict(cur.fetchall()) == {"legacy_runs": "airflow", "legacy_runs_id_seq": "airflow",
                                            "legacy_view": "airflow"}
            cur.execute("SELECT pg_get_userbyid(typowner) FROM pg_type WHERE typname = 'legacy_state'")
            assert cur.fetchone() == ("airflow",)
        allowed(conn, "ALTER TABLE legacy_runs ADD COLUMN note text")  # a later migration of its own
    finally:
        conn.close()


def test_dashboards_role_reads_the_views_only(stack):
    conn = connect(stack, "readonly", "risk")
    try:
        allowed(conn, "SELECT count(*) FROM dash.runs")
        for statement in ("SELECT count(*) FROM public.runs", "CREATE TEMP TABLE t (i int)",
                          "CREATE TABLE dash.x (i int)", "DELETE FROM public.runs", *NOT_FOR_ANYONE):
            with conn.cursor() as cur, pytest.raises(psycopg2.Error) as info:
                cur.execute(statement)
            assert info.value.pgcode in (*DENIED, "25006"), (statement, info.value.pgerror)  # 25006: read-only
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "1min"
    finally:
        conn.close()
    for database in ("airflow", "mlflow", "superset"):
        cannot_connect(stack, "readonly", database)


def test_tasks_role_loads_bars_and_records_runs_but_changes_no_schema(stack):
    sec = connect(stack, "tasks", "secmaster")
    risk = connect(stack, "tasks", "risk")
    try:
        allowed(sec, "INSERT INTO instruments (symbol, base_currency, quote_currency, pip_size, vendor) "
                     "VALUES ('ZZZ_YYY', 'ZZZ', 'YYY', 0.0001, 'test')")
        allowed(sec, "CREATE TEMP TABLE stage (i int)")  # bar loads stage through a temp table
        allowed(sec, "UPDATE instrument_financing SET long_rate = long_rate WHERE false")  # financing terms
        allowed(risk, "UPDATE runs SET status = status WHERE false")
        allowed(risk, "DELETE FROM runs WHERE false")
        for conn, table in ((sec, "bars"), (risk, "runs")):
            for statement in (f"ALTER TABLE {table} ADD COLUMN x int", f"DROP TABLE {table}", f"TRUNCATE {table}",
                              "CREATE TABLE public.x (i int)", *NOT_FOR_ANYONE):
                denied(conn, statement)
    finally:
        sec.close()
        risk.close()
    for database in ("airflow", "mlflow", "mlflow_auth", "superset"):
        cannot_connect(stack, "tasks", database)


def test_simulator_role_reads_bars_and_writes_nothing(stack):
    conn = connect(stack, "sim", "secmaster")
    try:
        allowed(conn, "SELECT count(*) FROM bars")
        for statement in ("DELETE FROM bars", "UPDATE instruments SET pip_size = 1", "CREATE TEMP TABLE t (i int)",
                          *NOT_FOR_ANYONE):
            denied(conn, statement)
    finally:
        conn.close()
    for database in ("risk", "airflow", "mlflow", "superset"):
        cannot_connect(stack, "sim", database)


def test_no_password_no_connection(stack):
    from urllib.parse import urlparse

    url = urlparse(stack.service_url("airflow"))
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host=url.hostname, port=url.port, user="airflow", password="wrong", dbname="airflow",
                         connect_timeout=10)


def test_a_second_start_skips_the_unchanged_database_preparation(stack):
    said: list[str] = []
    stack._prepare_databases(said.append)
    assert said and "unchanged since the last start; skipped" in said[-1]
    # something changed in the server (here: a table appeared in risk): the preparation runs again
    admin = psycopg2.connect(stack.database_url() + "/risk")
    with admin, admin.cursor() as cur:
        cur.execute("CREATE TABLE public.stamp_probe (i int)")
    try:
        stack._prepare_databases(said.append)
        assert "databases migrated, views applied; a role per service" in said[-1]
        stack._prepare_databases(said.append)
        assert "skipped" in said[-1]
    finally:
        admin = psycopg2.connect(stack.database_url() + "/risk")
        with admin, admin.cursor() as cur:
            cur.execute("DROP TABLE public.stamp_probe")
        admin.close()
