"""superset-init's wait for its metadata database (services/superset/wait_db.py): a name that does
not resolve yet is waited for, then named; a wrong password fails at once; a reachable one passes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import make_url

SCRIPT = Path(__file__).resolve().parents[2] / "services" / "superset" / "wait_db.py"


def _wait(uri: str, seconds: float) -> tuple[subprocess.CompletedProcess, float]:
    env = os.environ | {"SUPERSET_DATABASE_URI": uri, "SUPERSET_DB_WAIT": str(seconds)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - t0


def test_reachable_database_passes_and_an_unknown_host_is_waited_for_then_named(pg_server):
    url = make_url(pg_server).set(drivername="postgresql+psycopg2", database="postgres")
    ok, _ = _wait(url.render_as_string(hide_password=False), 5)
    assert ok.returncode == 0, ok.stderr
    missing, took = _wait(url.set(host="postgres-not-yet.invalid").render_as_string(hide_password=False), 4)
    assert missing.returncode == 1 and took >= 4, (missing.stdout, missing.stderr)
    assert "waiting for the metadata database" in missing.stdout
    assert "SUPERSET_DATABASE_URI" in missing.stderr and "Traceback" not in missing.stderr


def test_a_wrong_password_fails_at_once(pg_server):
    from mbats.db import connect

    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS wait_db_probe")
            cur.execute("CREATE ROLE wait_db_probe LOGIN PASSWORD 'right-one'")
        conn.commit()
    finally:
        conn.close()
    url = make_url(pg_server).set(drivername="postgresql+psycopg2", database="postgres", username="wait_db_probe",
                                  password="wrong-one")
    proc, took = _wait(url.render_as_string(hide_password=False), 60)
    assert proc.returncode == 1 and took < 30, (proc.stdout, proc.stderr, took)
    assert "password authentication failed" in proc.stderr and "wrong-one" not in proc.stderr + proc.stdout
