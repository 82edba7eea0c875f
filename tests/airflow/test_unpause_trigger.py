""""Unpause on trigger" starts only the manual run, and DAG failures and the daily summary reach the
alert receiver — on a real Airflow (api-server, scheduler, dag-processor from services/airflow/start.sh,
LocalExecutor) with MBATS_ALERT_URLS pointing at a loopback apprise json:// receiver.

Airflow's own cron timetables with ``catchup=False`` schedule the latest past fire as soon as a
DAG is unpaused: triggering a paused DAG from the UI (which unpauses it) gave a manual run and a
scheduled one. The DAGs use :class:`mbats.orchestration.timetables.FutureCronTrigger`.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone

import httpx
import pendulum
import pytest
from af_helpers import BIN, DAGS, EXPECTED_DAGS, ROOT, free_port, metadata_url
from test_airflow_server import START, Proc, _wait

from tests.conftest import alert_receiver


def _restriction(catchup: bool):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=pendulum.datetime(2026, 1, 1), latest=None, catchup=catchup)


def test_future_cron_trigger_never_schedules_a_past_fire_without_catchup():
    from airflow.timetables.trigger import CronTriggerTimetable

    from mbats.orchestration.timetables import future_cron

    now = pendulum.now("UTC")
    stock = CronTriggerTimetable("0 * * * *", timezone="UTC")
    ours = future_cron("0 * * * *", "UTC", interval=pendulum.duration(hours=1))
    # Airflow's own: the latest past fire, i.e. a run the moment the DAG is unpaused
    assert stock.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(False)).run_after <= now
    info = ours.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(False))
    assert info.run_after > now and info.run_after - now <= pendulum.duration(hours=1)
    assert (info.data_interval.end - info.data_interval.start) == pendulum.duration(hours=1)
    # after a run, the next fire; with catchup the past intervals are kept (backfills)
    last = ours.next_dagrun_info(last_automated_data_interval=info.data_interval, restriction=_restriction(False))
    assert last.run_after == info.run_after.add(hours=1)
    first = ours.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(True))
    assert first.run_after == pendulum.datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def receiver():
    with alert_receiver() as got:
        yield got


@pytest.fixture(scope="module")
def local_airflow(pg_server, samples_loaded, receiver, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-unpause")
    logdir = home / "proc-logs"
    logdir.mkdir()
    api_port = free_port()
    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_API_PORT": str(api_port),
        "AIRFLOW_ADMIN_PASSWORD": password,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url("airflow_unpause"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__API__WORKERS": "1",
        "MBATS_DEPLOYMENTS_FILE": str(ROOT / "strategies" / "deployments.yaml"),
        "MBATS_ALERT_URLS": receiver[0],
        "MBATS_OANDA_ENVIRONMENT": "practice",  # no token: the market-data download fails for good
        "MBATS_MARKETDATA_INSTRUMENTS": "EUR_USD",
    })
    env.pop("MBATS_OANDA_TOKEN", None)
    procs: list[Proc] = []
    try:
        import subprocess

        migrate = subprocess.run([str(START), "migrate"], env=env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        for name in ("api-server", "scheduler", "dag-processor"):
            procs.append(Proc(name, [str(START), name], env, logdir))
        base = f"http://127.0.0.1:{api_port}"

        def healthy():
            r = httpx.get(f"{base}/api/v2/monitor/health", timeout=5)
            return r.status_code == 200 and r.json()["scheduler"]["status"] == "healthy"

        _wait("api-server and scheduler health", healthy, 300, procs)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                           timeout=20).json()["access_token"]
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        _wait("the DAGs to be parsed", lambda: client.get("/api/v2/dags", params={"limit": 100}).json()
              ["total_entries"] >= len(EXPECTED_DAGS), 300, procs)
        yield {"client": client, "procs": procs}
        client.close()
    finally:
        for p in reversed(procs):
            p.stop()


def _trigger_like_the_ui(client: httpx.Client, dag_id: str) -> str:
    """The Trigger dialog with "unpause on trigger": unpause, then a manual run at now."""
    assert client.get(f"/api/v2/dags/{dag_id}").json()["is_paused"] is True
    assert client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    r = client.post(f"/api/v2/dags/{dag_id}/dagRuns",
                    json={"logical_date": datetime.now(timezone.utc).isoformat(), "conf": {}})
    assert r.status_code == 200, r.text
    return r.json()["dag_run_id"]


def _finished(client, dag_id: str, run_id: str):
    def check():
        state = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None
    return check


def test_unpause_on_trigger_starts_only_the_manual_run_and_alerts_arrive(local_airflow, receiver):
    client, procs = local_airflow["client"], local_airflow["procs"]
    assert client.get("/api/v2/importErrors").json()["total_entries"] == 0
    now = datetime.now(timezone.utc)
    for dag_id in ("market_data_daily", "eod_risk", "model_training"):
        nxt = client.get(f"/api/v2/dags/{dag_id}").json()["next_dagrun_run_after"]
        assert nxt and datetime.fromisoformat(nxt) > now, (dag_id, nxt)  # nothing due when unpaused

    _, received = receiver
    data_run = _trigger_like_the_ui(client, "market_data_daily")
    eod_run = _trigger_like_the_ui(client, "eod_risk")
    assert _wait("the market-data run", _finished(client, "market_data_daily", data_run), 600, procs, 3) == "failed"
    _wait("the eod_risk run", _finished(client, "eod_risk", eod_run), 600, procs, 3)

    for dag_id, manual in (("market_data_daily", data_run), ("eod_risk", eod_run)):
        runs = client.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
        assert [(r["dag_run_id"], r["run_type"]) for r in runs] == [(manual, "manual")], runs

    # the download failed for good (no OANDA token): one alert naming the DAG and the task
    failed = [r for r in received if r["title"] == "MBATS Airflow task failed: market_data_daily.download"]
    assert len(failed) == 1 and failed[0]["type"] == "failure"
    assert data_run in failed[0]["message"] and "MBATS_OANDA_TOKEN" in failed[0]["message"]
    # the eod_risk run sent the day's summary
    tis = {t["task_id"]: t["state"] for t in client.get(f"/api/v2/dags/eod_risk/dagRuns/{eod_run}/taskInstances")
           .json()["task_instances"]}
    assert tis["daily_summary"] == "success", tis
    summaries = [r for r in received if r["title"].startswith("MBATS daily summary ")]
    assert len(summaries) == 1 and "Sessions:" in summaries[0]["message"]


def test_trading_control_dag_reports_status_and_refuses_an_unconfirmed_venue_flatten(local_airflow, receiver):
    client, procs = local_airflow["client"], local_airflow["procs"]
    _, received = receiver
    client.patch("/api/v2/dags/trading_control", json={"is_paused": False}).raise_for_status()

    def trigger(conf: dict) -> str:
        r = client.post("/api/v2/dags/trading_control/dagRuns", json={"logical_date": None, "conf": conf})
        assert r.status_code == 200, r.text
        return r.json()["dag_run_id"]

    status_run = trigger({"command": "status"})
    assert _wait("the status run", _finished(client, "trading_control", status_run), 600, procs, 3) == "success"
    x = client.get(f"/api/v2/dags/trading_control/dagRuns/{status_run}/taskInstances/act/xcomEntries/return_value")
    assert x.status_code == 200, x.text
    value = x.json()["value"]
    reported = json.loads(value) if isinstance(value, str) else value
    # the DAG reports what `mbats live status` reports: the risk DB's running paper/live sessions
    # (earlier tests of this suite may have left some in the shared database)
    from mbats.db import connect
    from mbats.live.control import sessions

    conn = connect("risk")
    try:
        expected = sessions(conn)
    finally:
        conn.close()
    assert sorted(s["run_id"] for s in reported) == sorted(s["run_id"] for s in expected)

    flatten_run = trigger({"command": "flatten"})
    assert _wait("the flatten run", _finished(client, "trading_control", flatten_run), 600, procs, 3) == "failed"
    alerts = [r for r in received if r["title"] == "MBATS Airflow task failed: trading_control.act"]
    assert len(alerts) == 1 and flatten_run in alerts[0]["message"] and "confirm" in alerts[0]["message"]
