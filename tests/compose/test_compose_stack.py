"""End to end on the real docker-compose.yml, built and started by tests/compose/run.sh on podman
(`up -d --wait --scale strategy-runner=2`, the `offline` profile, published ports picked free).
Everything goes through the published ports, as a user would: Airflow's REST API, PostgreSQL,
MLflow, the S3 server, mlflow-serving and Superset in headless Chromium. Order matters: the sweep
uses the bars the market-data run loaded; the last test restarts the stack."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import datetime, timedelta

import httpx
import psycopg2
import pytest
from compose_steps import compose, containers
from stack_steps import run_dag, wait, window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
# 40 days ending 3 days ago: unpausing market_data_daily also runs its latest scheduled interval
# (yesterday, every default instrument); a daily candle it stores inside this window would make the
# triggered run resume after it (the downloader continues after the last stored bar of the window)
_start, _end = window(43)
START, END = _start, (datetime.fromisoformat(_end.replace("Z", "+00:00")) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
SWEEP_ID = f"compose-{uuid.uuid4().hex[:8]}"
LONG_RUNNING = {"postgres", "redis", "minio", "mlflow", "mlflow-serving", "airflow-api-server", "airflow-scheduler",
                "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "strategy-runner", "superset",
                "oanda-sim"}
ONE_SHOT = {"minio-volume", "minio-init", "mlflow-init", "mbats-init", "airflow-init", "superset-init"}


def query(stack: dict, database: str, sql: str, args=()) -> list[tuple]:
    conn = psycopg2.connect(f"{stack['db']}/{database}")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def mlflow_client(stack: dict):
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = stack["mlflow_user"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = stack["mlflow_password"]
    return MlflowClient(tracking_uri=stack["urls"]["mlflow"])


def runner_hostnames() -> dict[str, str]:
    """hostname Airflow records for each strategy-runner container -> container name."""
    names = {}
    for c in containers():
        if c["Service"] == "strategy-runner" and c["State"] == "running":
            out = subprocess.run(["podman", "exec", c["Name"], "python", "-c",
                                  "from mbats.orchestration.airflow_env import worker_hostname; print(worker_hostname())"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            names[out.stdout.strip()] = c["Name"]
    return names


def test_every_service_is_healthy_and_every_init_exited_0(stack):
    by_service: dict[str, list[dict]] = {}
    for c in containers():
        by_service.setdefault(c["Service"], []).append(c)
    assert set(by_service) == LONG_RUNNING | ONE_SHOT, sorted(by_service)
    for name in LONG_RUNNING:
        for c in by_service[name]:
            assert c["State"] == "running", c
            if name != "redis" or c.get("Health"):
                assert c.get("Health") == "healthy", c
    assert len(by_service["strategy-runner"]) == 2
    for name in ONE_SHOT:
        [c] = by_service[name]
        assert c["State"] == "exited" and c["ExitCode"] == 0, c
    # the published ports answer on the host's loopback
    assert httpx.get(stack["urls"]["airflow"] + "/api/v2/monitor/health", timeout=20).json()["scheduler"]["status"] == "healthy"
    assert httpx.get(stack["urls"]["mlflow"] + "/health", timeout=20).status_code == 200
    assert httpx.get(stack["urls"]["superset"] + "/health", timeout=20).text.strip() == "OK"
    assert httpx.get(stack["urls"]["sim"] + "/health", timeout=20).json()["status"] == "ok"
    assert query(stack, "risk", "SELECT 1") == [(1,)]  # the mbats role's password from .env works


def test_a_missing_secret_stops_compose_with_its_message(stack, tmp_path):
    broken = tmp_path / "broken.env"
    broken.write_text("".join(line + "\n" for line in stack["env_file"].read_text().splitlines()
                              if not line.startswith("REDIS_PASSWORD=")))
    r = compose("up", "-d", "redis", check=False, env=os.environ | {"COMPOSE_ENV_FILE": str(broken)}, timeout=120)
    assert r.returncode != 0
    assert "REDIS_PASSWORD" in r.stderr and "set it in .env" in r.stderr, r.stderr


def test_market_data_dag_loads_bars_from_the_simulator_container(stack, airflow):
    state, tis = run_dag(airflow, "market_data_daily", {"instruments": ["EUR_USD"], "start": START, "end": END},
                         timeout=900)
    assert state == "success", [(t["task_id"], t["state"]) for t in tis]
    assert {t["task_id"] for t in tis} >= {"instruments", "download", "data_quality"}
    rows = query(stack, "secmaster", "SELECT b.granularity, count(*) FROM bars b JOIN instruments i "
                 "ON i.id = b.instrument_id WHERE i.symbol = 'EUR_USD' AND b.ts >= %s AND b.ts < %s GROUP BY 1",
                 (START, END))
    counts = dict(rows)
    assert counts.get("H1", 0) > 500 and counts.get("D", 0) >= 25, counts  # 40 days of the FX week


def test_backtest_sweep_runs_on_both_strategy_runners_into_the_risk_db_mlflow_and_s3(stack, airflow):
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1", "start": START[:10],
            "end": END[:10], "grid": {"fast": [5, 10], "slow": [20, 30, 40, 60]}, "metric": "sharpe", "top": 8,
            "tasks": 8, "sweep_id": SWEEP_ID}
    state, tis = run_dag(airflow, "backtest_sweep", conf, timeout=1200)
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    runners = runner_hostnames()
    assert len(runners) == 2
    mapped = [t for t in tis if t["map_index"] is not None and t["map_index"] >= 0]
    assert len(mapped) >= 2, [(t["task_id"], t["map_index"]) for t in tis]  # chunks of configurations
    hosts = {t["hostname"] for t in mapped}
    assert hosts == set(runners), (hosts, runners)  # every chunk ran on a runner, both were used
    # every task writes the risk DB, so every one runs on a runner (the default queue's worker cannot)
    assert {t["queue"] for t in tis} == {"strategy_runner"}, [(t["task_id"], t["queue"]) for t in tis]
    assert query(stack, "risk", "SELECT count(*) FROM sweep_scores WHERE sweep_id = %s", (SWEEP_ID,)) == [(8,)]

    runs = query(stack, "risk", "SELECT id, status, mlflow_run_id FROM runs WHERE sweep_id = %s", (SWEEP_ID,))
    assert len(runs) == 8 and {r[1] for r in runs} == {"finished"}, runs
    client = mlflow_client(stack)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string=f"tags.`mbats.sweep_id` = '{SWEEP_ID}'", max_results=100)
    by_id = {r.info.run_id: r for r in found}
    run_ids = {r[2] for r in runs if r[2]}
    assert run_ids and run_ids <= set(by_id), (runs, sorted(by_id))


def test_a_strategy_runner_killed_mid_sweep_neither_stops_nor_duplicates_it(stack, airflow):
    """Kill one runner container while it writes the sweep's backtrader runs (`confirm` re-running
    the top 8 with some finished, some not): Airflow fails the task once its heartbeat stops and
    retries it on the other runner; every configuration ends with exactly one score, one run and
    one rank."""
    sweep_id = f"{SWEEP_ID}-kill"
    grid = {"fast": [5, 10], "slow": [20, 30, 40, 60]}
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1", "start": START[:10],
            "end": END[:10], "grid": grid, "metric": "sharpe", "top": 8, "tasks": 2, "sweep_id": sweep_id}
    runners = runner_hostnames()
    assert len(runners) == 2
    assert airflow.patch("/api/v2/dags/backtest_sweep", json={"is_paused": False}).status_code == 200
    r = airflow.post("/api/v2/dags/backtest_sweep/dagRuns", json={"logical_date": None, "conf": conf})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    tis_url = f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}/taskInstances"

    def finished_runs() -> int:
        return query(stack, "risk", "SELECT count(*) FROM runs WHERE sweep_id = %s AND status = 'finished'",
                     (sweep_id,))[0][0]

    def mid_sweep():
        """A task on a runner while the sweep has some of its runs, not all."""
        if not 1 <= finished_runs() < 8:
            return None
        tis = airflow.get(tis_url, params={"limit": 200}).json()["task_instances"]
        busy = [t for t in tis if t["state"] == "running" and t["hostname"] in runners]
        return busy[0] if busy else None

    victim_ti = wait("a sweep half-way through its runs", mid_sweep, timeout=900, interval=0.5)
    victim = runners[victim_ti["hostname"]]
    subprocess.run(["podman", "kill", "--signal", "KILL", victim], check=True, capture_output=True, timeout=60)
    killed_at = finished_runs()
    try:
        def finished():
            state = airflow.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}").json()["state"]
            return state if state in ("success", "failed") else None

        state = wait(f"backtest_sweep {run_id} after killing {victim}", finished, timeout=1500, interval=5)
        tis = airflow.get(tis_url, params={"limit": 200}).json()["task_instances"]
        victim_running = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", victim],
                                        capture_output=True, text=True, timeout=60).stdout.strip() == "true"
    finally:
        airflow.patch("/api/v2/dags/backtest_sweep", json={"is_paused": True})
        # the killed runner back (its restart policy may already have done so); only that service:
        # a plain `up --wait` re-checks the whole stack and took ~6 min here
        compose("up", "-d", "--wait", "--wait-timeout", "600", "--no-deps", "--scale", "strategy-runner=2",
                "strategy-runner", timeout=900)
    assert state == "success", [(t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis]
    print(f"killed {victim} running {victim_ti['task_id']}[{victim_ti['map_index']}] with {killed_at}/8 runs finished")
    [retried] = [t for t in tis if (t["task_id"], t["map_index"]) == (victim_ti["task_id"], victim_ti["map_index"])]
    assert retried["state"] == "success" and retried["try_number"] >= 2, retried  # failed once, then retried
    survivor = next(h for h, name in runners.items() if name != victim)
    if not victim_running:  # still dead (no restart policy kicked in): the retry ran on the other runner
        assert retried["hostname"] == survivor, (retried["hostname"], survivor)
    assert retried["hostname"] in runners, retried

    # exactly one finished run per configuration, one rank each, no configuration scored twice
    runs = query(stack, "risk", "SELECT id, status, params FROM runs WHERE sweep_id = %s", (sweep_id,))
    configs = sorted((r[2]["fast"], r[2]["slow"]) for r in runs)
    assert configs == sorted((f, s) for f in grid["fast"] for s in grid["slow"]), runs
    assert {r[1] for r in runs} == {"finished"}, runs
    ranks = query(stack, "risk", "SELECT m.value FROM run_metrics m JOIN runs r ON r.id = m.run_id "
                  "WHERE r.sweep_id = %s AND m.metric = 'sweep_rank'", (sweep_id,))
    assert sorted(v for (v,) in ranks) == [float(i) for i in range(1, 9)], ranks
    scores = query(stack, "risk", "SELECT params::text, count(*) FROM sweep_scores WHERE sweep_id = %s GROUP BY 1",
                   (sweep_id,))
    assert len(scores) == 8 and all(n == 1 for _, n in scores), scores  # every configuration scored once


def test_a_trained_and_promoted_model_is_served_by_mlflow_serving(stack):
    [runner, *_] = runner_hostnames().values()
    out = subprocess.run(["podman", "exec", runner, "mbats", "ml", "train", "EUR_USD", "-g", "H1", "--start",
                          START[:10], "--end", END[:10], "--folds", "2", "--json"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.find("{"):])
    assert result["dataset_uri"].startswith("s3://")
    client = mlflow_client(stack)
    # the model's files and the training dataset are objects in the S3 server (read with the service user)
    from minio import Minio

    s3 = Minio(stack["urls"]["s3"].removeprefix("http://"), access_key=stack["env_values"]["MBATS_S3_ACCESS_KEY"],
               secret_key=stack["env_values"]["MBATS_S3_SECRET_KEY"], secure=False)
    version = client.get_model_version(result["model_name"], str(result["version"]))
    model_id = version.model_id or version.source.rstrip("/").split("/")[-1]  # MLflow 3: models/<model id>/artifacts
    keys = [o.object_name for o in s3.list_objects("mlflow", recursive=True)]
    assert any(f"/models/{model_id}/artifacts/MLmodel" in f"/{key}" for key in keys), (model_id, keys[:30])
    bucket, _, key = result["dataset_uri"].removeprefix("s3://").partition("/")
    assert s3.stat_object(bucket, key).size > 0
    client.set_registered_model_alias(result["model_name"], "champion", str(result["version"]))
    # the model's input columns, read where the model is used: inside the stack (a runner container)
    info = subprocess.run(["podman", "exec", "-e", "MLFLOW_TRACKING_URI=http://mlflow:5000", runner, "python", "-c",
                           "import json, sys, mlflow; print(json.dumps(mlflow.models.get_model_info(sys.argv[1])"
                           ".signature.inputs.input_names()))", f"models:/{result['model_name']}/{result['version']}"],
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0, info.stderr[-3000:]
    cols = json.loads(info.stdout.strip().splitlines()[-1])

    def answers():
        r = httpx.post(stack["urls"]["serving"] + "/invocations", timeout=30,
                       json={"dataframe_split": {"columns": cols, "data": [[0.0] * len(cols)]}})
        return r if r.status_code == 200 else None

    r = wait("mlflow-serving to serve the new @champion", answers, timeout=300, interval=5)
    assert len(r.json()["predictions"]) == 1, r.text
    stack["model"] = (result["model_name"], str(result["version"]))


def test_superset_backtest_dashboard_shows_the_sweep_runs(stack, artifacts_dir):
    from superset_browser import login, open_dashboard, start_driver

    driver = start_driver()
    try:
        login(driver, stack["urls"]["superset"], stack["superset_user"], stack["superset_password"])
        shot = artifacts_dir / "compose-superset-backtest.png"
        view = open_dashboard(driver, stack["urls"]["superset"], "mbats-backtest", 13, shot, timeout=300)
    finally:
        driver.quit()
    assert view.error_elements == [], view.error_elements
    latest = {k: a for k, a in view.latest().items() if k is not None}
    assert len(latest) >= 10, latest
    assert all(a.status == 200 and a.error is None for a in latest.values()), latest
    assert len([a for a in latest.values() if a.rowcount]) >= len(latest) // 2, latest


def test_down_then_up_keeps_bars_runs_models_and_airflow_history(stack, airflow):
    before_bars = query(stack, "secmaster", "SELECT count(*) FROM bars")[0][0]
    before_runs = query(stack, "risk", "SELECT count(*) FROM runs WHERE sweep_id = %s", (SWEEP_ID,))[0][0]
    compose("down", timeout=600)
    assert containers() == []
    compose("up", "-d", "--wait", "--wait-timeout", "900", "--scale", "strategy-runner=2", timeout=1200)
    assert query(stack, "secmaster", "SELECT count(*) FROM bars")[0][0] == before_bars
    assert query(stack, "risk", "SELECT count(*) FROM runs WHERE sweep_id = %s", (SWEEP_ID,))[0][0] == before_runs
    from stack_steps import airflow_client

    fresh = airflow_client(stack)
    try:
        runs = fresh.get("/api/v2/dags/backtest_sweep/dagRuns", params={"limit": 50}).json()["dag_runs"]
    finally:
        fresh.close()
    assert any(r["conf"].get("sweep_id") == SWEEP_ID and r["state"] == "success" for r in runs), runs
    if "model" in stack:
        name, version = stack["model"]
        assert mlflow_client(stack).get_model_version_by_alias(name, "champion").version == version
    auth = httpx.post(stack["urls"]["superset"] + "/api/v1/security/login", timeout=30,
                      json={"username": stack["superset_user"], "password": stack["superset_password"],
                            "provider": "db"})
    token = auth.json()["access_token"]
    dashboards = httpx.get(stack["urls"]["superset"] + "/api/v1/dashboard/", timeout=30,
                           headers={"Authorization": f"Bearer {token}"}).json()["result"]
    assert "mbats-backtest" in {d["slug"] for d in dashboards}
