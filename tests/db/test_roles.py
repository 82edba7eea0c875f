"""Least privilege: connect as each service role and try what it must not do (and what it must)."""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from mbats import db
from mbats.db.roles import SERVICE_ROLES, apply_service_roles

DENIED = ("42501",)  # insufficient_privilege (permission denied, must be owner, …)


@pytest.fixture(scope="module")
def passwords(pg_server):
    pw = {role: uuid.uuid4().hex for role in SERVICE_ROLES.values()}
    assert apply_service_roles(pw)
    return pw


def _connect(database: str, role: str, password: str):
    url = db.make_url(db.database_url(database, driver="postgresql"))
    conn = psycopg2.connect(host=url.host, port=url.port, dbname=url.database, user=role, password=password,
                            connect_timeout=10)
    conn.autocommit = True
    return conn


def _denied(conn, statement: str) -> None:
    with conn.cursor() as cur, pytest.raises(psycopg2.Error) as info:
        cur.execute(statement)
    assert info.value.pgcode in DENIED, (statement, info.value.pgcode, info.value.pgerror)


def _allowed(conn, statement: str) -> None:
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(statement)
        cur.execute("ROLLBACK")  # proved allowed; leave no rows behind


SCHEMA_CHANGES = ("CREATE TABLE public.x (i int)", "ALTER TABLE bars ADD COLUMN x int", "DROP TABLE bars",
                  "TRUNCATE bars", "CREATE TEMP TABLE t (i int)", "COPY (SELECT 1) TO PROGRAM 'id'")
RISK_SCHEMA_CHANGES = ("CREATE TABLE public.x (i int)", "ALTER TABLE runs ADD COLUMN x int", "DROP TABLE runs",
                       "TRUNCATE runs", "CREATE TEMP TABLE t (i int)", "CREATE ROLE evil", "CREATE DATABASE evil")


def test_runner_reads_bars_writes_runs_and_changes_no_schema(passwords):
    role = SERVICE_ROLES["runner"]
    sec = _connect("secmaster", role, passwords[role])
    try:
        _allowed(sec, "SELECT count(*) FROM bars")
        for statement in ("INSERT INTO instruments (symbol, base_currency, quote_currency, pip_size, vendor) "
                          "VALUES ('ZZZ_YYY', 'ZZZ', 'YYY', 0.0001, 'x')", "DELETE FROM bars", "UPDATE bars SET close = 1",
                          *SCHEMA_CHANGES):
            _denied(sec, statement)
    finally:
        sec.close()
    risk = _connect("risk", role, passwords[role])
    try:
        _allowed(risk, "INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version) "
                       "VALUES ('backtest', 'backtest', 'grant-test', '{EUR_USD}', 'H1', 1000, 'test')")
        _allowed(risk, "UPDATE runs SET status = status WHERE false")
        for statement in RISK_SCHEMA_CHANGES:
            _denied(risk, statement)
    finally:
        risk.close()


def test_loader_writes_bars_only_and_may_not_touch_risk(passwords):
    role = SERVICE_ROLES["loader"]
    sec = _connect("secmaster", role, passwords[role])
    try:
        _allowed(sec, "INSERT INTO instruments (symbol, base_currency, quote_currency, pip_size, vendor) "
                      "VALUES ('ZZZ_YYY', 'ZZZ', 'YYY', 0.0001, 'grant-test')")
        _allowed(sec, "CREATE TEMP TABLE stage_bars (ts timestamptz)")  # COPY staging
        for statement in SCHEMA_CHANGES[:4] + ("DELETE FROM bars", "COPY (SELECT 1) TO PROGRAM 'id'"):
            _denied(sec, statement)
    finally:
        sec.close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        _connect("risk", role, passwords[role])


def test_simulator_only_reads_bars(passwords):
    role = SERVICE_ROLES["sim"]
    sec = _connect("secmaster", role, passwords[role])
    try:
        _allowed(sec, "SELECT count(*) FROM bars")
        for statement in ("INSERT INTO loads (kind, vendor, instrument_id, granularity) VALUES ('x', 'x', 1, 'M1')",
                          "UPDATE bars SET close = 1", *SCHEMA_CHANGES):
            _denied(sec, statement)
    finally:
        sec.close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        _connect("risk", role, passwords[role])


def test_a_role_without_a_password_cannot_log_in(pg_server):
    assert apply_service_roles({})  # roles exist; passwords are left as they are
    with pytest.raises(psycopg2.OperationalError, match="password"):
        url = db.make_url(db.database_url("secmaster", driver="postgresql"))
        psycopg2.connect(host=url.host, port=url.port, dbname=url.database, user=SERVICE_ROLES["sim"])


def test_loads_through_the_loader_role_work_end_to_end(passwords, monkeypatch):
    """The real ingest path (COPY fast path, staging upsert, load rows) runs with the loader's rights."""
    import pandas as pd

    from mbats.secmaster import Instrument
    from mbats.secmaster.ingest import load_frames

    role = SERVICE_ROLES["loader"]
    conn = _connect("secmaster", role, passwords[role])
    conn.autocommit = False
    try:
        ts = pd.date_range("2024-07-01", periods=30, freq="1min", tz="UTC")
        frame = pd.DataFrame({"ts": ts, "open": 1.3, "high": 1.31, "low": 1.29, "close": 1.3, "volume": 1})
        inst = Instrument.fx("GBP_SEK", vendor="grant-test")
        [first] = load_frames(conn, inst, "M1", [("a", frame)])
        frame.loc[:4, "close"] = 1.305
        [second] = load_frames(conn, inst, "M1", [("b", frame)])  # upsert through the TEMP staging table
        assert first.written.inserted == 30 and second.written.updated == 5
    finally:
        conn.close()
