"""MLflow tracking for backtests (and the model lifecycle in :mod:`mbats.ml`).

Unconfigured, MLflow tracks straight into the ``mlflow`` database of the platform's PostgreSQL
and keeps artifacts under ``MBATS_HOME/mlartifacts``. With ``MBATS_MLFLOW_TRACKING_URI`` set it
talks to that server, which decides where artifacts go (S3/MinIO in the stack).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mbats.config import get_settings
from mbats.errors import ServiceUnavailableError

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # fail in seconds, not minutes, when it is down
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# MLflow's usage telemetry phones home from a background thread; offline that thread races task
# teardown (a KeyError in Airflow tasks) and a self-hosted platform should not report usage anyway.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri() -> str:
    settings = get_settings()
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    from mbats.db import database_url, ensure_database

    ensure_database(settings.mlflow_db)
    return database_url(settings.mlflow_db)


def use_experiment(name: str | None = None) -> str:
    """Point MLflow at the platform's tracking store and experiment; return the experiment id."""
    import mlflow

    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    name = name or settings.mlflow_experiment
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = None if settings.mlflow_tracking_uri else (settings.artifacts_dir / name).resolve().as_uri()
            return mlflow.create_experiment(name, artifact_location=location)
        return experiment.experiment_id
    except mlflow.exceptions.MlflowException as exc:
        raise ServiceUnavailableError(
            f"MLflow tracking store {uri.split('@')[-1]} is not usable ({str(exc).splitlines()[0][:200]}); "
            "check MBATS_MLFLOW_TRACKING_URI"
        ) from None


def log_backtest(result, spec) -> str:
    """Log one backtest (params, metrics, tags linking the risk-DB run, plot, report); return the MLflow run id."""
    import mlflow

    experiment_id = use_experiment()
    tags = {
        "mbats.run_id": str(result.run_id),
        "mbats.strategy": result.strategy,
        "mbats.instruments": ",".join(result.instruments),
        "mbats.granularity": result.granularity,
        "mbats.run_type": spec.run_type,
    }
    if spec.sweep_id:
        tags["mbats.sweep_id"] = spec.sweep_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{result.strategy}-{result.run_id}",
                          tags=tags) as run:
        mlflow.log_params({**{f"param.{k}": v for k, v in result.params.items()},
                           "instruments": ",".join(result.instruments), "granularity": result.granularity,
                           "cash": spec.cash, "commission": spec.commission, "spread_pips": spec.spread_pips,
                           "sizer": spec.sizer})
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if v is not None})
        if result.report_path:
            folder = Path(result.report_path).parent
            mlflow.log_artifact(str(folder / "report.html"), artifact_path="report")
            mlflow.log_artifact(str(folder / "equity.png"), artifact_path="report")
        return run.info.run_id
