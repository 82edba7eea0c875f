"""The end-to-end steps against a running local stack (a plain module: tests/stack is on sys.path).

Each step takes the stack's description: {"urls": {...}, "env": client env, "airflow_password",
"superset_user", "superset_password"} and asserts what a user would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MBATS = ROOT / ".cache" / "venv" / "bin" / "mbats"


def wait(what: str, check, timeout: float, interval: float = 3.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error {last!r})")


def airflow_client(stack: dict) -> httpx.Client:
    base = stack["urls"]["airflow"]
    r = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": stack["airflow_password"]}, timeout=20)
    assert r.status_code in (200, 201), r.text
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=30)


def run_dag(client: httpx.Client, dag_id: str, conf: dict, timeout: float = 600) -> tuple[str, list[dict]]:
    """Unpause, trigger with conf over REST v2, wait for the end; return (state, task instances)."""
    assert client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    r = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        state = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    state = wait(f"{dag_id} run {run_id}", finished, timeout)
    tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200}).json()
    # the unpaused DAG also queues its latest scheduled interval; pause it again so it stops there
    client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": True})
    return state, tis["task_instances"]


def window(days: int = 40) -> tuple[str, str]:
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    return (end - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ")


def mbats_cli(stack: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBATS_")} | stack["env"]
    r = subprocess.run([str(MBATS), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, f"mbats {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def last_json(text: str):
    start = text.find("{")
    return json.loads(text[start:])
