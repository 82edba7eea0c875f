"""Superset on the local stack: ``services/superset/start.sh init`` only when its inputs changed, then serve.

The full init (db upgrade, admin, roles, dashboards import) costs minutes on a small machine and
changes nothing when run again; supervisord runs this instead of ``start.sh all``. The init itself
runs in one Superset process (``superset_init.py``; ``start.sh init`` if that fails):

    python -m mbats.stack.superset_start STATE_DIR

Inputs of the init: Superset's lock file and installed version, every file of services/superset
(config, start script, dashboards bundle), the settings it reads (admin user and password, data
and metadata URLs, secret key) and the metadata database (oid, alembic revision, admin present).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mbats.stack.initstamp import Stamp, database_fingerprint, digest, installed

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "services" / "superset"
SETTINGS = ("SUPERSET_ADMIN_USER", "SUPERSET_ADMIN_PASSWORD", "SUPERSET_ADMIN_EMAIL", "SUPERSET_DATABASE_URI",
            "SUPERSET_SECRET_KEY", "MBATS_SUPERSET_DATA_URL", "MBATS_RISK_DB", "MBATS_SECMASTER_DB")


def init_digest(env: dict[str, str]) -> str:
    venv = Path(env.get("SUPERSET_BIN_DIR", "")).parent
    user = env.get("SUPERSET_ADMIN_USER", "admin").replace("'", "''")
    fingerprint = database_fingerprint(env.get("SUPERSET_DATABASE_URI", ""),
                                       f"SELECT count(*) FROM ab_user WHERE username = '{user}'")
    return digest(ROOT / "requirements" / "superset.lock", installed(venv, "apache_superset"), SERVICE,
                  *(f"{k}={env.get(k, '')}" for k in SETTINGS), fingerprint)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mbats.stack.superset_start STATE_DIR", file=sys.stderr)
        return 2
    start = str(SERVICE / "start.sh")
    stamp = Stamp(Path(argv[0]), "superset-init")
    before = init_digest(dict(os.environ))
    if stamp.fresh(before):
        print("superset: init inputs unchanged since the last start; skipping db upgrade, admin, roles and "
              f"dashboards import (delete {stamp.path} to force them)", flush=True)
    else:
        stamp.clear()
        t0 = time.monotonic()
        print("superset: init (inputs changed or first start)", flush=True)
        python = Path(os.environ.get("SUPERSET_BIN_DIR", "")) / "python"
        done = subprocess.run([str(python), str(Path(__file__).with_name("superset_init.py")), str(SERVICE)])
        if done.returncode:
            print("superset: the one-process init failed; running start.sh init", flush=True)
            done = subprocess.run([start, "init"])
            if done.returncode:
                return done.returncode
        stamp.record(init_digest(dict(os.environ)))  # the database after init (revision, admin) is the input next time
        print(f"superset: init done in {time.monotonic() - t0:.0f} s", flush=True)
    os.execv(start, [start, "serve"])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
