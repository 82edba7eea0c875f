"""End to end on the local stack (`python -m mbats.stack up`, what `make stack-up` runs), started
by the test in a temp folder on free ports with its own embedded PostgreSQL and fresh secrets:
all services healthy; the market-data DAG, triggered over Airflow's REST API, loads bars from the
OANDA simulator into the secmaster; a sweep lands in the risk DB and MLflow; a model is trained
and registered; Superset's backtest dashboard shows the runs and the MLflow UI lists the model,
both in headless Chromium after login; `down` stops everything it started.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "superset"))
from stack_steps import ROOT, mbats_cli, run_dag, window  # noqa: E402

PYTHON = ROOT / ".cache" / "venv" / "bin" / "python"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the stack starts in the first test
SWEEP_ID = f"e2e-{uuid.uuid4().hex[:8]}"
START, END = window(40)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_cmd(env: dict, state: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([str(PYTHON), "-m", "mbats.stack", *args], env=env, cwd=state, capture_output=True,
                          text=True, timeout=timeout)


def open_ports(ports) -> list[int]:
    out = []
    for port in ports:
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                out.append(port)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("stack")
    home = tmp_path_factory.mktemp("stack-home")
    for p in (state, home):
        p.chmod(0o755)
    ports = {"MBATS_EMBEDDED_PG_PORT": free_port(), "MBATS_STACK_S3_PORT": free_port(),
             "MBATS_STACK_MLFLOW_PORT": free_port(), "MBATS_STACK_AIRFLOW_PORT": free_port(),
             "MBATS_STACK_AIRFLOW_LOG_PORT": free_port(), "MBATS_STACK_SUPERSET_PORT": free_port(),
             "MBATS_STACK_SUPERVISOR_PORT": free_port(), "sim": free_port()}
    # SeaweedFS's internal ports: a block of 12 above a random base (checked free)
    for _ in range(50):
        base = 20000 + secrets.randbelow(20000)
        if not open_ports(range(base, base + 12)):
            break
    pw = {k: secrets.token_urlsafe(16) for k in ("AIRFLOW_ADMIN_PASSWORD", "SUPERSET_ADMIN_PASSWORD",
                                                  "SUPERSET_SECRET_KEY", "MBATS_SUPERSET_DB_PASSWORD",
                                                  "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MBATS_", "AIRFLOW", "SUPERSET", "MLFLOW"))}
    env |= {k: str(v) for k, v in ports.items() if k != "sim"} | pw | {
        "MBATS_HOME": str(home), "MBATS_STACK_DIR": str(state / "stack"),
        "MBATS_STACK_S3_INTERNAL_PORT_BASE": str(base),
        "MBATS_STACK_UP_TIMEOUT": "1800",  # a cold start on a busy 2-core machine (Superset's init)
        "MBATS_OANDA_SIM_URL": f"http://127.0.0.1:{ports['sim']}",
        "MBATS_STRATEGIES_DIR": str(ROOT / "strategies"),
        # unpausing market_data_daily also runs its latest scheduled interval: let that one fetch
        # another instrument, so EUR_USD's 40 days come from the run the test triggers
        "MBATS_MARKETDATA_INSTRUMENTS": "GBP_USD"}
    t0 = time.time()
    up = stack_cmd(env, state, "up")
    up_seconds = time.time() - t0
    try:
        assert up.returncode == 0, f"stack up failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
        client_env = dict(line.split("=", 1) for line in stack_cmd(env, state, "env").stdout.splitlines())
        urls = {"airflow": f"http://127.0.0.1:{ports['MBATS_STACK_AIRFLOW_PORT']}",
                "superset": f"http://127.0.0.1:{ports['MBATS_STACK_SUPERSET_PORT']}",
                "mlflow": f"http://127.0.0.1:{ports['MBATS_STACK_MLFLOW_PORT']}",
                "sim": f"http://127.0.0.1:{ports['sim']}"}
        yield {"env": client_env, "stack_env": env, "state": state, "urls": urls, "ports": ports,
               "s3_base": base, "up": up, "up_seconds": up_seconds,
               "airflow_password": pw["AIRFLOW_ADMIN_PASSWORD"], "superset_user": "admin",
               "superset_password": pw["SUPERSET_ADMIN_PASSWORD"], "mlflow_password": pw["MLFLOW_ADMIN_PASSWORD"],
               "db": client_env["MBATS_DATABASE_URL"]}
    finally:
        stack_cmd(env, state, "down", timeout=300)


@pytest.fixture(scope="module")
def airflow(stack):
    from stack_steps import airflow_client

    client = airflow_client(stack)
    yield client
    client.close()


def query(stack: dict, database: str, sql: str, args=()) -> list[tuple]:
    conn = psycopg2.connect(f"{stack['db']}/{database}")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def test_all_services_are_healthy_with_one_log_each(stack):
    print(f"stack up in {stack['up_seconds']:.0f} s")
    status = stack_cmd(stack["stack_env"], stack["state"], "status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    table, _, urls = status.stdout.partition("\n\n")  # one line per service, then the URLs in use
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    expected = {"postgres", "s3", "mlflow", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                "superset", "oanda-sim"}
    assert set(lines) == expected
    assert all("healthy" in line and "NOT" not in line for line in lines.values()), status.stdout
    logs = stack["state"] / "stack" / "logs"
    assert {p.stem for p in logs.glob("*.log")} >= expected - {"postgres"}
    # every service listens on the port its setting gave it
    listening = [v for k, v in stack["ports"].items() if k != "MBATS_STACK_AIRFLOW_LOG_PORT"]
    assert open_ports(listening) == listening
    assert httpx.get(stack["urls"]["sim"] + "/health", timeout=5).json()["status"] == "ok"
    assert f"{stack['urls']['airflow']}" in urls and "MBATS_STACK_AIRFLOW_PORT" in urls
    # progress while waiting: every line of `up` says how long it has been running
    assert all(line.startswith("[") and " s] " in line for line in stack["up"].stdout.split("\n\n")[0].splitlines()
               if line.strip() and not line.startswith(tuple(expected))), stack["up"].stdout


def test_each_service_connects_as_its_own_role(stack):
    """Issue 17: no service of the stack holds the superuser; each has the role made for it."""
    from mbats.db.embedded import superuser_url

    su = superuser_url(Path(stack["stack_env"]["MBATS_HOME"]) / "pgdata",
                       int(stack["stack_env"]["MBATS_EMBEDDED_PG_PORT"]))
    conn = psycopg2.connect(su + "/postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT datname, usename FROM pg_stat_activity WHERE datname IS NOT NULL "
                        "AND pid <> pg_backend_pid()")
            sessions = set(cur.fetchall())
    finally:
        conn.close()
    by_db = {}
    for database, user in sessions:
        by_db.setdefault(database, set()).add(user)
    assert by_db.get("airflow") == {"airflow"}, sessions
    assert by_db.get("superset") == {"superset"}, sessions
    assert by_db.get("mlflow", {"mlflow"}) == {"mlflow"} and by_db.get("mlflow_auth", {"mlflow"}) == {"mlflow"}, sessions
    assert "postgres" not in {user for _, user in sessions}, sessions
    assert stack["env"]["MBATS_DATABASE_URL"].startswith("postgresql://mbats_tasks:")


def test_market_data_dag_loads_bars_from_the_simulator(stack, airflow):
    state, tis = run_dag(airflow, "market_data_daily", {"instruments": ["EUR_USD"], "start": START, "end": END})
    assert state == "success", [(t["task_id"], t["state"]) for t in tis]
    assert {t["task_id"] for t in tis} >= {"instruments", "download", "data_quality"}
    rows = query(stack, "secmaster", "SELECT b.granularity, count(*), min(b.ts), max(b.ts) FROM bars b "
                 "JOIN instruments i ON i.id = b.instrument_id WHERE i.symbol = 'EUR_USD' AND b.ts >= %s "
                 "AND b.ts < %s GROUP BY 1", (START, END))
    counts = {g: n for g, n, _, _ in rows}
    assert counts.get("H1", 0) > 500 and counts.get("D", 0) >= 25, counts  # 40 days of the FX week


def test_sweep_lands_in_the_risk_db_and_mlflow(stack, airflow):
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1", "start": START[:10],
            "end": END[:10], "grid": {"fast": [5, 10], "slow": [20, 40]}, "metric": "sharpe", "top": 2,
            "sweep_id": SWEEP_ID}
    state, tis = run_dag(airflow, "backtest_sweep", conf)
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    # every configuration scored by the core; the top 2 confirmed by a backtrader run each
    scores = query(stack, "risk", "SELECT count(*) FROM sweep_scores WHERE sweep_id = %s", (SWEEP_ID,))
    assert scores == [(4,)], scores
    runs = query(stack, "risk", "SELECT id, status, mlflow_run_id FROM runs WHERE sweep_id = %s", (SWEEP_ID,))
    assert len(runs) == 2 and {r[1] for r in runs} == {"finished"}, runs

    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = stack["mlflow_password"]
    try:
        client = MlflowClient(tracking_uri=stack["urls"]["mlflow"])
        experiments = client.search_experiments()
        found = client.search_runs([e.experiment_id for e in experiments],
                                   filter_string=f"tags.`mbats.sweep_id` = '{SWEEP_ID}'", max_results=50)
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    children = {r.info.run_id for r in found}
    assert {r[2] for r in runs if r[2]} <= children and len(children) >= 2, (runs, children)


def test_train_and_register_a_model(stack):
    import json

    out = mbats_cli(stack, "ml", "train", "EUR_USD", "-g", "H1", "--start", START[:10], "--end", END[:10],
                    "--folds", "2", "--json")
    result = json.loads(out.stdout[out.stdout.find("{"):])
    assert result["alias"] == "challenger" and int(result["version"]) >= 1
    assert result["dataset_uri"].startswith("s3://")  # the dataset went to the stack's S3 server
    auth = ("admin", stack["mlflow_password"])
    r = httpx.get(f"{stack['urls']['mlflow']}/api/2.0/mlflow/registered-models/get",
                  params={"name": result["model_name"]}, auth=auth, timeout=20)
    assert r.status_code == 200, r.text
    assert result["version"] in {v["version"] for v in r.json()["registered_model"]["latest_versions"]}
    # the basic-auth app refuses anonymous and wrong-password calls
    for bad in (None, ("admin", "wrong")):
        r = httpx.get(f"{stack['urls']['mlflow']}/api/2.0/mlflow/registered-models/search", auth=bad, timeout=20)
        assert r.status_code == 401
    stack["model_name"] = result["model_name"]
    second = mbats_cli(stack, "ml", "train", "EUR_USD", "-g", "H1", "--start", START[:10], "--end", END[:10],
                       "--folds", "2", "--model", "dummy", "--json")
    assert int(json.loads(second.stdout[second.stdout.find("{"):])["version"]) == int(result["version"]) + 1


def test_mlflow_serving_serves_the_champion_and_follows_a_new_promotion(stack, tmp_path):
    """services/mlflow-serving (the compose service's start script) against the stack's MLflow."""
    from mlflow import MlflowClient

    name = stack.get("model_name") or "mbats-fx-direction"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBATS_")} | stack["env"] | {
        "PYTHON": str(PYTHON), "PATH": f"{PYTHON.parent}:{os.environ.get('PATH', '')}",
        "MLFLOW_SERVING_HOST": "127.0.0.1", "MLFLOW_SERVING_PORT": str(port), "MLFLOW_SERVING_POLL_SECONDS": "2",
        "MLFLOW_SERVING_STATE": str(tmp_path / "state")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = stack["mlflow_password"]
    client = MlflowClient(tracking_uri=stack["urls"]["mlflow"])
    log = (tmp_path / "serving.log").open("w")
    proc = subprocess.Popen([str(ROOT / "services" / "mlflow-serving" / "start.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    check = [str(PYTHON), str(ROOT / "services" / "mlflow-serving" / "serve_champion.py"), "--check"]
    try:
        from stack_steps import wait

        wait("the serving state file", lambda: (tmp_path / "state").exists(), 60, 1)
        assert (tmp_path / "state").read_text() == "waiting"
        assert subprocess.run(check, env=env).returncode == 0  # healthy while no champion exists
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        assert versions, "no registered version to promote"
        client.set_registered_model_alias(name, "champion", str(versions[0]))
        wait("the champion to be served", lambda: (tmp_path / "state").read_text() == f"serving {versions[0]}", 240)
        assert subprocess.run(check, env=env).returncode == 0
        import mlflow

        mlflow.set_tracking_uri(stack["urls"]["mlflow"])
        schema = mlflow.models.get_model_info(f"models:/{name}/{versions[0]}").signature.inputs
        cols = schema.input_names()
        r = httpx.post(f"http://127.0.0.1:{port}/invocations", timeout=30,
                       json={"dataframe_split": {"columns": cols, "data": [[0.0] * len(cols)]}})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1, r.text
        if len(versions) > 1:  # a newer promotion is picked up without a restart
            client.set_registered_model_alias(name, "champion", str(versions[-1]))
            wait("the new champion", lambda: (tmp_path / "state").read_text() == f"serving {versions[-1]}", 240)
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serving.log").read_text()[-3000:]


def test_superset_backtest_dashboard_shows_the_runs(stack, artifacts_dir):
    from superset_browser import login, open_dashboard, start_driver

    driver = start_driver()
    try:
        login(driver, stack["urls"]["superset"], stack["superset_user"], stack["superset_password"])
        shot = artifacts_dir / "stack-superset-backtest.png"
        view = open_dashboard(driver, stack["urls"]["superset"], "mbats-backtest", 13, shot, timeout=240)
    finally:
        driver.quit()
    assert shot.exists() and shot.stat().st_size > 20_000
    assert view.error_elements == [], view.error_elements
    latest = {k: a for k, a in view.latest().items() if k is not None}
    assert len(latest) >= 10, latest
    assert all(a.status == 200 and a.error is None for a in latest.values()), latest
    with_rows = [a for a in latest.values() if a.rowcount]
    assert len(with_rows) >= len(latest) // 2, latest  # the sweep's runs, trades and equity are on the page


def test_mlflow_ui_lists_the_registered_model_after_login(stack, artifacts_dir):
    import base64

    from selenium.webdriver.common.by import By
    from superset_browser import start_driver

    name = stack.get("model_name") or "mbats-fx-direction"
    driver = start_driver()
    try:
        token = base64.b64encode(f"admin:{stack['mlflow_password']}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        driver.get(f"{stack['urls']['mlflow']}/#/models")
        deadline = time.time() + 90
        while time.time() < deadline and name not in driver.find_element(By.TAG_NAME, "body").text:
            time.sleep(1)
        body = driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(str(artifacts_dir / "stack-mlflow-models.png"))
    finally:
        driver.quit()
    assert name in body, body[:2000]
    assert httpx.get(stack["urls"]["mlflow"] + "/", timeout=20).status_code == 401  # the UI asks for a login


def test_a_warm_restart_skips_init_whose_inputs_did_not_change(stack):
    """`down` then `up` on the same data: migrations, Airflow's and Superset's init are skipped."""
    down = stack_cmd(stack["stack_env"], stack["state"], "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    t0 = time.time()
    up = stack_cmd(stack["stack_env"], stack["state"], "up")
    print(f"warm stack up in {time.time() - t0:.0f} s (cold: {stack['up_seconds']:.0f} s)")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "migrations, views and roles unchanged since the last start; skipped" in up.stdout
    assert "`airflow db migrate` skipped" in up.stdout
    superset_log = (stack["state"] / "stack" / "logs" / "superset.log").read_text()
    assert superset_log.rstrip().count("init inputs unchanged since the last start") == 1, superset_log[-3000:]


def test_stack_down_stops_everything_it_started(stack):
    ports = [v for k, v in stack["ports"].items() if k != "MBATS_STACK_AIRFLOW_LOG_PORT"]
    down = stack_cmd(stack["stack_env"], stack["state"], "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "postgres stopped" in down.stdout
    time.sleep(2)
    assert open_ports(ports) == [] and open_ports(range(stack["s3_base"], stack["s3_base"] + 12)) == []
    status = stack_cmd(stack["stack_env"], stack["state"], "status", timeout=60)
    assert status.returncode == 3 and "NOT HEALTHY" in status.stdout
