"""Servers for the ML tests, started once for the tests/ml package and stopped after it:
SeaweedFS (`weed mini`, S3 with an identities file) and an MLflow tracking server (through
services/mlflow/start.sh) with a Postgres backend on the session's embedded PostgreSQL and
artifacts proxied to the S3 bucket. The MBATS_* settings point at them while the package runs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers next to this file

from ml_servers import TIMINGS, Server, planted_bars, start_mlflow, start_weed  # noqa: E402

ACCESS_KEY, SECRET_KEY = "mbatstest", "mbats-test-secret-0123"
PLANTED = "AUD_CAD"        # synthetic instrument with a planted, learnable pattern


def _set_env(values: dict[str, str | None]) -> dict[str, str | None]:
    from mbats.config import reset_settings_cache

    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings_cache()
    return saved


@pytest.fixture(scope="package")
def s3_server(tmp_path_factory) -> Server:
    server = start_weed(tmp_path_factory.mktemp("weed"), ACCESS_KEY, SECRET_KEY)
    TIMINGS["weed_start_s"] = server.started_in
    yield server
    server.stop()


@pytest.fixture(scope="package")
def mlflow_server(tmp_path_factory, s3_server: Server) -> Server:
    from mbats.db import database_url, ensure_database

    ensure_database("mlflow_server_test")
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"), database_url("mlflow_server_test"),
                          "s3://mlflow-test-artifacts",
                          {"MLFLOW_S3_ENDPOINT_URL": s3_server.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"})
    TIMINGS["mlflow_start_s"] = server.started_in
    yield server
    server.stop()


@pytest.fixture(scope="package")
def ml_env(mlflow_server: Server, s3_server: Server):
    """MBATS settings pointing at the test servers, with a model name of its own."""
    saved = _set_env({
        "MBATS_MLFLOW_TRACKING_URI": mlflow_server.url, "MBATS_S3_ENDPOINT": s3_server.url,
        "MBATS_S3_ACCESS_KEY": ACCESS_KEY, "MBATS_S3_SECRET_KEY": SECRET_KEY,
        "MBATS_S3_BUCKET_ARTIFACTS": "mlflow-test-artifacts",
        "MBATS_ML_MODEL_NAME": f"fx-direction-{uuid.uuid4().hex[:6]}",
    })
    yield os.environ["MBATS_ML_MODEL_NAME"]
    _set_env(saved)


@pytest.fixture(scope="package")
def planted_instrument() -> str:
    """Load the planted bars into the security master (idempotent)."""
    from mbats.db import connect
    from mbats.secmaster.ingest import load_frames
    from mbats.secmaster.instruments import Instrument

    conn = connect("secmaster")
    try:
        instrument = Instrument.fx(PLANTED, vendor="mbats-tests", is_synthetic=True,
                                   source="tests/ml: mean-reverting random walk, seed 11")
        load_frames(conn, instrument, "H1", [("planted", planted_bars())])
    finally:
        conn.close()
    return PLANTED


@pytest.fixture(scope="package")
def trained(ml_env: str, planted_instrument: str):
    """A logistic regression trained on the planted bars, registered and promoted to @champion."""
    from mbats.ml.registry import promote
    from mbats.ml.train import TrainSpec, train

    result = train(TrainSpec(instruments=[planted_instrument], granularity="H1", model="logreg", folds=4))
    TIMINGS["train_s"] = result.seconds
    TIMINGS["log_model_s"] = result.log_model_seconds
    promotion = promote()
    return result, promotion


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("ml timings: " + ", ".join(f"{k}={v:.2f}" for k, v in TIMINGS.items()))
