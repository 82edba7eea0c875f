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
from mbats.redact import redact

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
            # MLflow's message repeats the URI, basic-auth password included
            f"MLflow tracking store {uri.split('@')[-1]} is not usable ({redact(str(exc).splitlines()[0], uri)[:200]}); "
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
    tags.update(lineage_tags(result.run_id))
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
        else:  # sweep re-runs write no report: a light record instead (one upload, a few kB)
            log_light_artifacts(result)
        return run.info.run_id


def lineage_tags(run_id: int) -> dict[str, str]:
    """MLflow tags naming what the risk-DB run was made of (data range and sources, code, model)."""
    from mbats.db import connect
    from mbats.risk.store import describe_sources, run_lineage

    conn = connect("risk")
    try:
        lineage = run_lineage(conn, run_id)
    finally:
        conn.close()
    tags = {f"mbats.{k}": v.isoformat() if hasattr(v, "isoformat") else str(v)
            for k, v in lineage.items() if v not in (None, "") and k != "data_sources"}
    sources = describe_sources(lineage["data_sources"])
    if sources:
        tags["mbats.data_sources"] = sources[:5000]  # MLflow's tag value limit is 8000
    return tags


EQUITY_POINTS = 500  # the equity curve of a sweep re-run, thinned to this many points


def equity_curve(run_id: int, points: int = EQUITY_POINTS):
    """The run's account value over time from the risk DB, thinned evenly (first and last kept)."""
    from mbats.db import connect
    from mbats.risk.store import read_frame

    conn = connect("risk")
    try:
        frame = read_frame(conn, "SELECT ts, value, drawdown_pct FROM equity WHERE run_id = %s ORDER BY ts",
                           (run_id,))
    finally:
        conn.close()
    return thin(frame, points)


def thin(frame, points: int = EQUITY_POINTS):
    """Every k-th row so at most ``points`` (+ the last) remain."""
    if len(frame) <= points:
        return frame
    step = -(-len(frame) // points)
    return frame.iloc[sorted(set(range(0, len(frame), step)) | {len(frame) - 1})]


def log_light_artifacts(result) -> None:
    """``summary/metrics.json`` and ``summary/equity.csv`` (≤ 500 points) in one artifact upload."""
    import json
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "metrics.json").write_text(json.dumps(
            {"run_id": result.run_id, "strategy": result.strategy, "params": result.params,
             "instruments": result.instruments, "granularity": result.granularity, "metrics": result.metrics},
            indent=1, default=str))
        equity = thin(result.equity[["value", "drawdown_pct"]].reset_index()) if len(result.equity) else \
            equity_curve(result.run_id)
        equity.to_csv(Path(folder, "equity.csv"), index=False)
        mlflow.log_artifacts(folder, artifact_path="summary")


def log_session(run_id: int) -> str | None:
    """An MLflow run for a paper/live session once it ends: the same ``mbats.*`` lineage tags as a
    backtest (data range and sources, code version, model), its parameters and metrics. A resumed
    session updates its earlier MLflow run. Never raises: tracking must not fail a trading session."""
    log = logging.getLogger(__name__)
    try:
        from mlflow import MlflowClient

        from mbats.db import connect
        from mbats.risk.store import get_run, set_run_fields

        experiment_id = use_experiment()
        conn = connect("risk")
        try:
            run = get_run(conn, run_id)
            client = MlflowClient()
            tags = {"mbats.run_id": str(run_id), "mbats.strategy": run["strategy"],
                    "mbats.instruments": ",".join(run["instruments"] or []), "mbats.granularity": run["granularity"],
                    "mbats.run_type": run["run_type"], "mbats.status": run["status"], **lineage_tags(run_id)}
            mlflow_run_id = run.get("mlflow_run_id")
            if not mlflow_run_id:
                mlflow_run_id = client.create_run(experiment_id, run_name=f"{run['strategy']}-{run['run_type']}-{run_id}",
                                                  tags=tags).info.run_id
                for key, value in (run.get("params") or {}).items():
                    client.log_param(mlflow_run_id, f"param.{key}", value)
                set_run_fields(conn, run_id, mlflow_run_id=mlflow_run_id)
            else:
                for key, value in tags.items():
                    client.set_tag(mlflow_run_id, key, value)
            for key, value in {**run["metrics"], "bars": run.get("bars")}.items():
                if value is not None:
                    client.log_metric(mlflow_run_id, key, float(value))
            client.set_terminated(mlflow_run_id, {"finished": "FINISHED", "failed": "FAILED"}.get(run["status"], "KILLED"))
            return mlflow_run_id
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("run %s: not logged to MLflow (%s)", run_id,
                    redact(str(exc).strip().splitlines()[0], tracking_uri())[:200]
                    if str(exc).strip() else type(exc).__name__)
        return None
