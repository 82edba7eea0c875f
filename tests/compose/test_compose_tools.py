"""The `tools` profile: JupyterLab (image built by tests/compose/run.sh) started on the running stack,
as `docker compose --profile tools up` would. pgAdmin (`dpage/pgadmin4`) is not started here: no
stand-in of it exists (see tests/compose/standins/README.md and docs/stack.md)."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest
from compose_steps import compose, containers
from test_compose_privileges import ALLOWED, inspect, secrets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
TOOLS = os.environ | {"COMPOSE_PROFILES": "offline,tools"}

CHECK = """
import json, mlflow
from mbats.db import connect
from mbats.tracking import use_experiment
conn = connect("secmaster")
with conn.cursor() as cur:
    cur.execute("SELECT current_user, count(*) FROM bars")
    user, bars = cur.fetchone()
with mlflow.start_run(experiment_id=use_experiment(), run_name="jupyter-check") as run:
    mlflow.log_metric("x", 1.0)
print(json.dumps({"user": user, "bars": bars, "run": run.info.run_id}))
"""


def test_jupyter_serves_notebooks_behind_its_token_with_mbats_and_its_own_credentials(stack):
    compose("up", "-d", "--wait", "--wait-timeout", "600", "jupyter", env=TOOLS, timeout=900)
    try:
        [c] = [c for c in containers() if c["Service"] == "jupyter"]
        assert c["State"] == "running" and c["Health"] == "healthy", c
        url = f"http://127.0.0.1:{stack['env_values']['JUPYTER_PORT']}"
        assert httpx.get(url + "/api/contents", timeout=30).status_code == 403  # no token, no notebooks
        listing = httpx.get(url + "/api/contents", params={"token": stack["env_values"]["JUPYTER_TOKEN"]}, timeout=30)
        assert listing.status_code == 200, listing.text
        assert any(item["name"].endswith(".ipynb") for item in listing.json()["content"]), listing.json()
        # the notebooks' Python reads bars as the runners' role and tracks as its own MLflow user
        out = subprocess.run(["podman", "exec", c["Name"], "python", "-c", CHECK], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["user"] == "mbats_runner" and result["bars"] > 0, result
        env = dict(item.split("=", 1) for item in inspect(c["Name"])["Config"]["Env"])
        assert env["MLFLOW_TRACKING_USERNAME"] == "mbats-jupyter" and result["run"], result
        foreign = [name for name, value in secrets(stack).items()
                   if any(value in v for v in env.values()) and name not in ALLOWED["jupyter"]]
        assert foreign == [], foreign
    finally:
        compose("rm", "--stop", "--force", "jupyter", env=TOOLS, timeout=300)
