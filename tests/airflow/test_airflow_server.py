"""A real Airflow, started by the test from services/airflow/start.sh on free ports: metadata DB
a new database on the embedded PostgreSQL, CeleryExecutor on a real Redis, two Celery workers
(one started as `worker`, one as `strategy-runner`, both serving the strategy queue).

A sweep triggered through the REST v2 API reaches success, its configurations ran on both
workers and its runs are in the risk DB; the UI, rendered in headless Chromium after login,
lists the DAGs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from af_helpers import BIN, DAGS, EXPECTED_DAGS, ROOT, free_port, metadata_url


START = ROOT / "services" / "airflow" / "start.sh"


class Proc:
    def __init__(self, name: str, args: list[str], env: dict, logdir: Path):
        self.name = name
        self.log = logdir / f"{name}.log"
        self.handle = open(self.log, "wb")
        self.popen = subprocess.Popen(args, env=env, stdout=self.handle, stderr=subprocess.STDOUT,
                                      start_new_session=True, cwd=ROOT)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        self.handle.close()


def _wait(what: str, check, timeout: float, procs: list[Proc], interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive(), f"{p.name} exited while waiting for {what}:\n{p.tail()}"
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(interval)
    logs = "\n".join(f"--- {p.name}\n{p.tail(1500)}" for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error {last!r})\n{logs}")


@pytest.fixture(scope="module")
def airflow_server(pg_server, samples_loaded, tmp_path_factory):
    from mbats.config import get_settings  # noqa: F401  (mbats env is inherited by the components)

    home = tmp_path_factory.mktemp("airflow-server")
    logdir = home / "proc-logs"
    logdir.mkdir()
    procs: list[Proc] = []
    redis_port, api_port = free_port(), free_port()
    password = secrets.token_urlsafe(12)
    env = os.environ.copy()
    for key in [k for k in env if k.startswith("AIRFLOW")]:
        env.pop(key)  # nothing from the in-process test configuration
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_API_PORT": str(api_port),
        "AIRFLOW_ADMIN_PASSWORD": password,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url("airflow_server"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mbats.orchestration.airflow_env.worker_hostname",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW_WORKER_CONCURRENCY": "2",
        "MBATS_DEPLOYMENTS_FILE": str(ROOT / "strategies" / "deployments.yaml"),
    })
    try:
        redis = Proc("redis", [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(redis_port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], env, logdir)
        procs.append(redis)
        migrate = subprocess.run([str(START), "migrate"], env=env, capture_output=True, text=True, timeout=240)
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        for name in ("api-server", "scheduler", "dag-processor"):
            procs.append(Proc(name, [str(START), name], env, logdir))
        for name, component, queues in (("worker-a", "worker", "default,strategy_runner"),
                                        ("worker-b", "strategy-runner", "strategy_runner,default")):
            procs.append(Proc(name, [str(START), component], env | {
                "MBATS_WORKER_NAME": name, "AIRFLOW_WORKER_QUEUES": queues,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}, logdir))
        base = f"http://127.0.0.1:{api_port}"

        def healthy():
            r = httpx.get(f"{base}/api/v2/monitor/health", timeout=5)
            return r.status_code == 200 and r.json()["scheduler"]["status"] == "healthy"

        _wait("api-server and scheduler health", healthy, 150, procs)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                           timeout=10).json()["access_token"]
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=20)
        _wait("the DAGs to be parsed", lambda: client.get("/api/v2/dags", params={"limit": 100}).json()
              ["total_entries"] >= len(EXPECTED_DAGS), 150, procs)
        # both workers registered with the broker before anything is queued
        _wait("two Celery workers", lambda: all("ready" in p.tail(20000) for p in procs[-2:]), 120, procs)
        yield {"base": base, "client": client, "password": password, "procs": procs}
        client.close()
    finally:
        for p in reversed(procs):
            p.stop()


def test_sweep_triggered_over_rest_runs_on_two_celery_workers_and_lands_in_the_risk_db(airflow_server):
    from mbats.db import connect
    from mbats.risk.store import list_runs

    client: httpx.Client = airflow_server["client"]
    procs = airflow_server["procs"]
    errors = client.get("/api/v2/importErrors").json()
    assert errors["total_entries"] == 0, errors
    dag_ids = {d["dag_id"] for d in client.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
    assert dag_ids == set(EXPECTED_DAGS)

    assert client.patch("/api/v2/dags/backtest_sweep", json={"is_paused": False}).status_code == 200
    sweep_id = f"rest-{uuid.uuid4().hex[:8]}"
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
            "start": "2017-06-01", "end": "2018-01-01", "grid": {"fast": [5, 10], "slow": [20, 40]},
            "metric": "sharpe", "top": 4, "sweep_id": sweep_id}
    r = client.post("/api/v2/dags/backtest_sweep/dagRuns", json={"logical_date": None, "conf": conf})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        state = client.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    state = _wait("the sweep to finish", finished, 420, procs, interval=3)
    tis = client.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}/taskInstances",
                     params={"limit": 100}).json()["task_instances"]
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]

    # two chunks of two configurations, scored by the compiled core on the two workers
    mapped = [t for t in tis if t["task_id"] == "score_chunk"]
    assert len(mapped) == 2 and {t["state"] for t in mapped} == {"success"}
    assert {t["queue"] for t in mapped} == {"strategy_runner"}
    assert sorted(t["rendered_map_index"] for t in mapped) == ["configurations 1-2 of 4", "configurations 3-4 of 4"]
    assert {t["hostname"] for t in mapped} == {"worker-a", "worker-b"}  # the sweep was shared out

    conn = connect("risk")
    try:
        runs = list_runs(conn, sweep_id=sweep_id)
    finally:
        conn.close()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    assert sorted(r["metrics"]["sweep_rank"] for r in runs) == [1.0, 2.0, 3.0, 4.0]
    rank_ti = next(t for t in tis if t["task_id"] == "confirm")
    xcom = client.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}/taskInstances/confirm/xcomEntries/return_value")
    assert rank_ti["state"] == "success" and xcom.status_code == 200
    best = xcom.json()["value"]["best"]
    assert [b["rank"] for b in best] == [1, 2, 3, 4] and best[0]["run_id"] in {r["id"] for r in runs}


def test_ui_in_headless_chromium_lists_the_dags_after_login(airflow_server, artifacts_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{airflow_server['base']}/dags")
        user = wait.until(ec.presence_of_element_located((By.NAME, "username")))
        user.send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(airflow_server["password"])
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "backtest_sweep" in d.page_source and "market_data_minute" in d.page_source)
        if "/dags" not in driver.current_url:
            driver.get(f"{airflow_server['base']}/dags")
            wait.until(lambda d: "market_data_minute" in d.page_source)
        driver.save_screenshot(str(artifacts_dir / "airflow-dags.png"))
        page = driver.page_source
        assert all(dag_id in page for dag_id in EXPECTED_DAGS)
        assert driver.get_cookie("_token") is not None
    finally:
        driver.quit()
