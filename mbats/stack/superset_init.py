"""Superset's init for the local stack in one process (run by Superset's own python, not mbats').

The same steps as ``services/superset/start.sh init`` — db upgrade, admin user and password, roles
and permissions, dashboards import, then ``sync_assets.py`` — but the CLI commands share one
loaded app instead of starting Superset five times (each start costs seconds of imports, minutes
on a busy 2-core machine). ``mbats.stack.superset_start`` falls back to ``start.sh init`` if this
fails. Settings: as start.sh (SUPERSET_ADMIN_USER, SUPERSET_ADMIN_PASSWORD, SUPERSET_ADMIN_EMAIL,
MBATS_SUPERSET_DATA_URL, SUPERSET_CONFIG_PATH).

    <superset venv>/bin/python mbats/stack/superset_init.py SERVICES_SUPERSET_DIR
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main(service: Path) -> int:
    os.environ.setdefault("SUPERSET_CONFIG_PATH", str(service / "superset_config.py"))
    os.environ["FLASK_APP"] = "superset.app:create_app()"
    user = os.environ.get("SUPERSET_ADMIN_USER", "admin")
    password = os.environ.get("SUPERSET_ADMIN_PASSWORD")
    if not password or not os.environ.get("MBATS_SUPERSET_DATA_URL"):
        print("error: SUPERSET_ADMIN_PASSWORD and MBATS_SUPERSET_DATA_URL must be set", file=sys.stderr)
        return 2
    from flask.cli import ScriptInfo

    from superset.app import create_app
    from superset.cli.main import superset as cli

    info = ScriptInfo(create_app=create_app)  # one app for every command below

    def run(step: str, *args: str) -> None:
        print(f"superset: {step}", flush=True)
        cli.main(list(args), obj=info, standalone_mode=False, prog_name="superset")

    run("upgrading the metadata database", "db", "upgrade")
    run(f"admin user '{user}'", "fab", "create-admin", "--username", user, "--firstname", "MBATS", "--lastname",
        "Admin", "--email", os.environ.get("SUPERSET_ADMIN_EMAIL", "admin@mbats.local"), "--password", password)
    # create-admin leaves an existing user alone: keep its password in step with the settings
    run("admin password", "fab", "reset-password", "--username", user, "--password", password)
    run("roles and permissions", "init")
    sys.path.insert(0, str(service))
    from bundle_zip import build

    with tempfile.TemporaryDirectory() as tmp:
        bundle = build(Path(tmp) / "mbats_dashboards.zip")
        run("importing the dashboards", "import-dashboards", "-p", str(bundle), "-u", user)
        # sync_assets creates its own app: a process of its own
        subprocess.run([sys.executable, str(service / "sync_assets.py"), str(bundle), user], check=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(Path(sys.argv[1])))
