"""Train → register → alias → load by alias → predict, promotion, the ML strategy and REST serving,
against a real MLflow server (Postgres backend) with artifacts proxied to a real S3 server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ml_servers import free_port


def test_train_registers_challenger_and_alias_load_predicts_like_the_fitted_model(trained, s3_server):
    import mlflow
    from mlflow import MlflowClient
    from minio import Minio

    from mbats.ml.registry import load_model, resolve

    result, _ = trained
    challenger = resolve(alias="challenger")
    assert challenger.version == result.version
    model = mlflow.pyfunc.load_model(f"models:/{result.model_name}@challenger")
    expected = result.estimator.predict_proba(result.sample)
    np.testing.assert_allclose(np.asarray(model.predict(result.sample)), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(load_model(challenger.uri).predict(result.sample)), expected, atol=1e-12)

    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["instruments"] == "AUD_CAD" and run.data.params["model"] == "logreg"
    assert run.data.tags["mbats.data_from"].startswith("2024-01")
    assert len(MlflowClient().get_metric_history(result.run_id, "fold_auc")) == 4
    # The planted mean reversion is learnable: clearly better than a coin out of sample.
    assert run.data.metrics["oos_auc"] > 0.55
    assert run.data.metrics["oos_auc"] == pytest.approx(result.oos_metrics["auc"])
    # Artifacts went through the server's proxy into the S3 bucket; the dataset to the datasets bucket.
    s3 = Minio(s3_server.url.split("//")[1], "mbatstest", "mbats-test-secret-0123", secure=False,
               region="us-east-1")
    keys = [o.object_name for o in s3.list_objects("mlflow-test-artifacts", recursive=True)]
    assert any(k.endswith("MLmodel") for k in keys)
    assert result.dataset_uri.startswith("s3://datasets/")
    assert {b.name for b in s3.list_buckets()} >= {"mlflow-test-artifacts", "datasets", "reports"}


def test_first_promotion_makes_champion_and_a_worse_challenger_is_refused(trained, planted_instrument):
    from mlflow import MlflowClient

    from mbats.ml.registry import promote, resolve
    from mbats.ml.train import TrainSpec, train

    result, first = trained
    assert first.promoted and first.champion_after == result.version
    assert "no champion yet" in first.reason

    worse = train(TrainSpec(instruments=[planted_instrument], model="dummy", folds=4))
    assert resolve(alias="challenger").version == worse.version
    decision = promote()
    assert not decision.promoted
    assert resolve(alias="champion").version == result.version
    assert decision.challenger_value < decision.champion_value
    mv = MlflowClient().get_model_version(result.model_name, worse.version)
    assert mv.tags["promotion"] == "refused"
    assert "does not beat" in mv.tags["promotion_reason"]


def test_ml_strategy_backtest_trades_and_records_the_model_version(trained, planted_instrument):
    from mbats.backtest.runner import BacktestSpec, run_backtest
    from mbats.db import connect
    from mbats.ml.registry import resolve
    from mbats.risk.store import get_run

    champion = resolve(alias="champion")
    result = run_backtest(BacktestSpec(strategy="ml_signal", instruments=[planted_instrument], granularity="H1",
                                       params={"threshold": "0.52"},
                                       account_currency=planted_instrument.split("_")[1]),  # no conversion series here
                          track=True, write_report=False)
    assert result.metrics["trades"] > 10
    conn = connect("risk")
    try:
        run = get_run(conn, result.run_id)
    finally:
        conn.close()
    assert run["model_version"] == champion.version
    assert run["model_uri"] == f"models:/{champion.name}@champion"
    assert run["status"] == "finished"
    # Trading the planted pattern should make money before costs.
    assert result.metrics["total_return_pct"] > 0


def test_rest_invocations_answer_with_the_champion_predictions(trained, tmp_path):
    from mbats.ml.serve import predict, start_server, stop_server

    result, _ = trained
    port = free_port()
    started = time.monotonic()
    process = start_server(f"models:/{result.model_name}@champion", port=port, log=tmp_path / "serve.log")
    try:
        ready = time.monotonic() - started
        got = predict(f"http://127.0.0.1:{port}", result.sample)
    finally:
        stop_server(process)
    from ml_servers import TIMINGS

    TIMINGS["model_serve_ready_s"] = ready
    np.testing.assert_allclose(got, result.estimator.predict_proba(result.sample)[:, 1], atol=1e-9)
    assert process.poll() is not None
