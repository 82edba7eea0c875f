"""Lineage of model-backed runs and of sweeps, and versions registered outside `mbats ml train`
(as in the MLflow UI: plain MlflowClient calls, no mbats tags), against the real MLflow server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`mbats …` in a subprocess with stdout piped, the way a script runs it."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "mbats.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=PROJECT)


def _register_plainly(name: str, estimator, sample: pd.DataFrame) -> str:
    """Log and register a model with MLflow's own API only (what the UI's "Register model" does)."""
    import mlflow
    from mlflow import MlflowClient

    from mbats.ml.registry import client

    client()  # points mlflow at the test server
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(estimator, name="model", pyfunc_predict_fn="predict_proba",
                                        pip_requirements=["scikit-learn"], input_example=sample)
    plain = MlflowClient()
    try:
        plain.create_registered_model(name)
    except Exception:  # noqa: BLE001 - already there
        pass
    return plain.create_model_version(name, source=info.model_uri, run_id=run.info.run_id,
                                      model_id=info.model_id).version


def test_a_version_registered_outside_mbats_is_listed_with_what_is_missing_and_promote_refuses(trained):
    from mlflow import MlflowClient

    from mbats.errors import MbatsError
    from mbats.ml.registry import list_versions, promote

    result, _ = trained
    name = f"ui-registered-{uuid.uuid4().hex[:6]}"
    first = _register_plainly(name, result.estimator, result.sample)
    second = _register_plainly(name, result.estimator, result.sample)
    MlflowClient().set_registered_model_alias(name, "champion", first)
    MlflowClient().set_registered_model_alias(name, "challenger", second)

    rows = {r["version"]: r for r in list_versions(name)}
    assert rows[second]["source"] == "external" and rows[second]["instruments"] is None
    assert {"instruments", "oos_auc"} <= set(rows[second]["missing"])
    assert rows[second]["run_id"]  # what is known is still shown

    with pytest.raises(MbatsError) as refused:
        promote(name)
    assert "--holdout-start" in str(refused.value) and "oos_auc" in str(refused.value)

    # The CLI, piped: the table marks the gaps; the refusal is one error line, exit 1, no traceback.
    out = _cli("ml", "models", "--name", name)
    assert out.returncode == 0, out.stderr
    assert "external" in out.stdout and "missing" in out.stdout
    out = _cli("ml", "promote", "--name", name)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    listed = json.loads(_cli("ml", "models", "--name", name, "--json").stdout)
    assert {r["version"] for r in listed} == {first, second}
    # --force is the stated way out without a holdout: it promotes and says it compared nothing
    forced = promote(name, force=True)
    assert forced.promoted and forced.champion_after == second
    assert forced.reason.startswith("forced without a comparison")


def test_promote_scores_external_versions_on_a_stated_holdout(trained, planted_instrument):
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    from mbats.ml.registry import Holdout, promote, resolve

    result, _ = trained
    name = f"ui-holdout-{uuid.uuid4().hex[:6]}"
    coin = DummyClassifier(strategy="prior").fit(result.sample, [0, 1, 0, 1, 0])
    weak = _register_plainly(name, coin, result.sample)
    strong = _register_plainly(name, result.estimator, result.sample)
    MlflowClient().set_registered_model_alias(name, "champion", weak)
    MlflowClient().set_registered_model_alias(name, "challenger", strong)

    holdout = Holdout([planted_instrument], "H1", pd.Timestamp("2024-04-01", tz="UTC").to_pydatetime())
    decision = promote(name, holdout=holdout)
    assert decision.promoted, decision.reason
    assert decision.holdout == holdout.describe() and holdout.describe() in decision.reason
    assert decision.challenger_value > 0.55 and decision.champion_value == pytest.approx(0.5)
    assert resolve(name, "champion").version == strong
    tags = MlflowClient().get_model_version(name, strong).tags
    assert float(tags["oos_auc"]) == pytest.approx(decision.challenger_value)
    assert tags["holdout"] == holdout.describe()


def test_a_holdout_inside_the_champions_training_data_is_refused(trained, planted_instrument):
    from mlflow import MlflowClient

    from mbats.errors import MbatsError
    from mbats.ml.registry import Holdout, model_name, promote, resolve

    result, _ = trained
    name = model_name()
    champion = resolve(name, "champion").version
    before = resolve(name, "challenger").version  # restored afterwards: other tests follow @challenger
    external = _register_plainly(name, result.estimator, result.sample)
    MlflowClient().set_registered_model_alias(name, "challenger", external)
    try:
        with pytest.raises(MbatsError, match="not out of sample"):
            promote(name, holdout=Holdout([planted_instrument], "H1",
                                          pd.Timestamp("2024-02-01", tz="UTC").to_pydatetime()))
        assert resolve(name, "champion").version == champion
    finally:
        MlflowClient().set_registered_model_alias(name, "challenger", before)


def test_ml_backtest_records_model_name_version_run_and_data_lineage(trained, planted_instrument):
    from mlflow import MlflowClient

    from mbats.backtest.runner import BacktestSpec, run_backtest
    from mbats.ml.registry import resolve

    champion = resolve(alias="champion")
    trained_by = MlflowClient().get_model_version(champion.name, champion.version).run_id
    result = run_backtest(BacktestSpec(strategy="ml_signal", instruments=[planted_instrument], granularity="H1",
                                       params={"threshold": "0.52"}, account_currency="CAD"),
                          track=True, write_report=False)
    report = json.loads(_cli("report", str(result.run_id), "--json").stdout)
    assert report["model_name"] == champion.name and report["model_version"] == champion.version
    assert report["model_run_id"] == trained_by
    assert report["code_version"].startswith("mbats ")
    assert report["data_sources"][0]["vendor"] == "mbats-tests"

    tags = MlflowClient().get_run(result.mlflow_run_id).data.tags
    assert tags["mbats.model_name"] == champion.name and tags["mbats.model_version"] == champion.version
    assert tags["mbats.model_run_id"] == trained_by
    assert tags["mbats.code_version"] == report["code_version"]
    assert tags["mbats.data_from"].startswith("2024-01") and tags["mbats.data_to"].startswith("2024-05")
    assert "AUD_CAD: mbats-tests (synthetic)" in tags["mbats.data_sources"]

    shown = _cli("report", str(result.run_id))
    assert shown.returncode == 0, shown.stderr
    assert trained_by in shown.stdout and "mbats-tests (synthetic)" in shown.stdout


def test_sweep_children_and_parent_carry_light_artifacts(ml_env, planted_instrument):
    from mlflow import MlflowClient

    from mbats.backtest.runner import BacktestSpec
    from mbats.research.sweep import SweepRequest, run_sweep

    base = BacktestSpec(strategy="sma_crossover", instruments=[planted_instrument], granularity="H1",
                        account_currency="CAD")
    result = run_sweep(SweepRequest(base, {"fast": [5, 10, 15], "slow": [40, 60]}, top=2, workers=1))
    client = MlflowClient()
    parent = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"sweep_scores.csv", "heatmap_sharpe.svg"} <= parent
    scores = pd.read_csv(client.download_artifacts(result.mlflow_run_id, "sweep_scores.csv"))
    assert len(scores) == 6
    for child in result.rerun:
        files = {a.path for a in client.list_artifacts(child.mlflow_run_id, "summary")}
        assert files == {"summary/metrics.json", "summary/equity.csv"}
        metrics = json.loads(Path(client.download_artifacts(child.mlflow_run_id, "summary/metrics.json")).read_text())
        assert metrics["run_id"] == child.run_id and metrics["params"]["fast"] == child.params["fast"]
        equity = pd.read_csv(client.download_artifacts(child.mlflow_run_id, "summary/equity.csv"))
        assert 2 <= len(equity) <= 501 and equity["value"].iloc[0] == pytest.approx(100_000, rel=0.05)
        tags = client.get_run(child.mlflow_run_id).data.tags
        assert "AUD_CAD: mbats-tests (synthetic)" in tags["mbats.data_sources"]
        assert tags["mbats.code_version"].startswith("mbats ")


def test_a_paper_session_on_the_model_records_its_lineage_in_the_risk_db_and_mlflow(trained, planted_instrument):
    from mlflow import MlflowClient
    from pydantic import SecretStr

    from mbats.config import get_settings
    from mbats.db import connect
    from mbats.kernel.limits import RiskLimits
    from mbats.live.config import LiveConfig
    from mbats.live.session import run
    from mbats.ml.registry import resolve
    from mbats.risk.store import get_run
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator

    from ml_servers import planted_bars

    bars = planted_bars().set_index("ts")
    server = SimServer(Simulator({planted_instrument: bars}, "H1", SimConfig(
        currency="CAD", start=str(bars.index[400]), heartbeat_seconds=0.3, stream_poll_seconds=0.01,
        max_requests_per_second=None))).start()
    settings = get_settings().model_copy(update={
        "oanda_environment": "sim", "oanda_token": SecretStr(DEFAULT_TOKEN), "oanda_account_id": DEFAULT_ACCOUNT,
        "oanda_sim_url": server.url, "oanda_retry_attempts": 2, "oanda_retry_max_wait": 0.5,
        "live_heartbeat_timeout": 3.0})
    try:
        result = run(LiveConfig("ml_signal", [planted_instrument], params={"threshold": "0.52"}, granularity="H1",
                                max_bars=4, warmup=60, sim_step=True, track=True), risk=RiskLimits(), settings=settings)
    finally:
        server.stop()
    champion = resolve(alias="champion")
    trained_by = MlflowClient().get_model_version(champion.name, champion.version).run_id
    conn = connect("risk")
    try:
        row = get_run(conn, result.run_id)
    finally:
        conn.close()
    assert (row["model_name"], row["model_version"], row["model_run_id"]) == (champion.name, champion.version,
                                                                               trained_by)
    assert row["mlflow_run_id"] and row["code_version"].startswith("mbats ")
    tags = MlflowClient().get_run(row["mlflow_run_id"]).data.tags
    assert tags["mbats.run_type"] == "paper" and tags["mbats.model_run_id"] == trained_by
    assert f"{planted_instrument}: oanda-sim (synthetic) live-backfill, 60 bars" in tags["mbats.data_sources"]
    assert "live-stream" in tags["mbats.data_sources"] and tags["mbats.code_version"] == row["code_version"]
