"""The `tools` profile started on the running stack, as `docker compose --profile tools up` would:
JupyterLab (image built by tests/compose/run.sh) and pgAdmin (`dpage/pgadmin4:9.8`, here the stand-in
of tests/compose/standins/pgadmin: the same pgAdmin 9.8 from its PyPI wheel; see its README), logged in
through its login form and driven through the REST endpoints its UI uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import psycopg2
import pytest
from compose_steps import compose, containers
from test_compose_privileges import ALLOWED, inspect, secrets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
TOOLS = os.environ | {"COMPOSE_PROFILES": "offline,tools"}
SERVERS_JSON = Path(__file__).resolve().parents[2] / "services" / "pgadmin" / "servers.json"

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


def pgadmin_login(client: httpx.Client, email: str, password: str) -> bool:
    """Log in through pgAdmin's login form (CSRF token from the page) as a browser does; on success the
    client carries the session's CSRF header the UI sends with every API call."""
    page = client.get("/login")
    token = re.search(r'"csrfToken": "([^"]+)"', page.text)
    assert page.status_code == 200 and token, page.text[:2000]
    r = client.post("/authenticate/login", data={"email": email, "password": password, "csrf_token": token[1]})
    assert r.status_code == 302, r.text[:2000]
    if not r.headers["location"].endswith("/browser/"):
        return False
    utils = client.get("/browser/js/utils.js")  # where the UI reads its CSRF token from
    assert utils.status_code == 200, utils.status_code
    client.headers["X-pgA-CSRFToken"] = re.search(r"pgAdmin\['csrf_token'\] = '([^']+)'", utils.text)[1]
    return True


def tree_nodes(client: httpx.Client, path: str) -> list[dict]:
    """Children of a node of pgAdmin's browser tree (its node lists answer in `data` or `result`)."""
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:2000])
    body = r.json()
    return body["data"] if body["data"] is not None else body["result"]


def registered_server(client: httpx.Client, name: str, group: str) -> tuple[str, str, dict]:
    """(group id, server id, properties) of the server named ``name`` in pgAdmin's browser tree."""
    [gid] = [g["_id"] for g in tree_nodes(client, "/browser/server_group/nodes/") if g["label"] == group]
    servers = tree_nodes(client, f"/browser/server/nodes/{gid}/")
    matching = [s["_id"] for s in servers if s["label"] == name]
    assert len(matching) == 1, servers  # loaded once, on the first start only
    props = client.get(f"/browser/server/obj/{gid}/{matching[0]}").json()
    return gid, matching[0], props


def test_pgadmin_logs_in_its_admin_and_connects_the_mbats_server_to_the_compose_postgres(stack):
    [server] = json.loads(SERVERS_JSON.read_text())["Servers"].values()
    env = stack["env_values"]
    assert server["Username"] == "mbats"  # its password is MBATS_DB_PASSWORD (services/pgadmin/README.md)
    url = f"http://127.0.0.1:{env['PGADMIN_PORT']}"
    try:
        for start in ("first", "second"):  # the second start reuses the pgadmin-data volume
            compose("up", "-d", "--wait", "--wait-timeout", "600", "pgadmin", env=TOOLS, timeout=900)
            [c] = [c for c in containers() if c["Service"] == "pgadmin"]
            assert c["State"] == "running" and c["Health"] == "healthy", c
            with httpx.Client(base_url=url, timeout=60) as client:
                assert client.get("/misc/ping").text == "PING"
                assert not pgadmin_login(client, env["PGADMIN_EMAIL"], env["PGADMIN_PASSWORD"] + "-wrong")
                assert client.get("/browser/js/utils.js").status_code == 302  # to the login page: no session
                assert pgadmin_login(client, env["PGADMIN_EMAIL"], env["PGADMIN_PASSWORD"]), start
                gid, sid, props = registered_server(client, server["Name"], server["Group"])
                assert (props["host"], props["port"], props["db"], props["username"]) == (
                    server["Host"], server["Port"], server["MaintenanceDB"], server["Username"]), props
                assert not props["save_password"]  # pgAdmin asks for it: not stored in the volume
                connected = client.post(f"/browser/server/connect/{gid}/{sid}",
                                        json={"password": env["MBATS_DB_PASSWORD"]}).json()
                data = connected["data"]
                assert connected["success"] == 1 and data["connected"], connected
                assert data["user"]["name"] == "mbats" and not data["user"]["is_superuser"], data["user"]
                databases = tree_nodes(client, f"/browser/database/nodes/{gid}/{sid}/")
                assert {"secmaster", "risk"} <= {d["label"] for d in databases}, databases
            # the session pgAdmin opened is on the compose postgres, from the pgadmin container, as mbats
            ips = {n["IPAddress"] for n in inspect(c["Name"])["NetworkSettings"]["Networks"].values()}
            conn = psycopg2.connect(f"{stack['db']}/postgres")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT host(client_addr) FROM pg_stat_activity "
                                "WHERE usename = 'mbats' AND application_name LIKE 'pgAdmin 4%'")
                    assert {r[0] for r in cur.fetchall()} & ips, ips
            finally:
                conn.close()
            container_env = dict(item.split("=", 1) for item in inspect(c["Name"])["Config"]["Env"])
            foreign = [name for name, value in secrets(stack).items()
                       if any(value in v for v in container_env.values()) and name not in ALLOWED["pgadmin"]]
            assert foreign == [], foreign
            compose("rm", "--stop", "--force", "pgadmin", env=TOOLS, timeout=300)  # the volume stays
    finally:
        compose("rm", "--stop", "--force", "pgadmin", env=TOOLS, timeout=300, check=False)
