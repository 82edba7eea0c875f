"""Walk-forward training: fit, validate out of sample, log to MLflow, register ``@challenger``.

Folds are expanding windows in time (scikit-learn ``TimeSeriesSplit``) with a gap of
``horizon`` bars per instrument, so no training label overlaps a test bar. The out-of-sample
(OOS) metrics pool every fold's test predictions; promotion compares those.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from mbats.config import get_settings
from mbats.errors import MbatsError
from mbats.ml.features import FEATURES, LEADING_NAN_ROWS, make_dataset
from mbats.ml.models import make_estimator

CHALLENGER, CHAMPION = "challenger", "champion"


@dataclass
class TrainSpec:
    instruments: list[str]
    granularity: str = "H1"
    start: datetime | None = None
    end: datetime | None = None
    model: str = "logreg"
    params: dict[str, object] = field(default_factory=dict)
    folds: int = 5
    horizon: int = 1
    model_name: str | None = None  # registered model; default MBATS_ML_MODEL_NAME
    seed: int = 7


@dataclass
class TrainResult:
    model_name: str
    version: str
    model_uri: str              # models:/<name>/<version>
    run_id: str
    fold_metrics: list[dict[str, float]]
    oos_metrics: dict[str, float]
    dataset_uri: str
    rows: int
    data_from: pd.Timestamp
    data_to: pd.Timestamp
    estimator: object
    sample: pd.DataFrame        # a few feature rows (to compare predictions in tests and notebooks)
    seconds: float
    log_model_seconds: float


def load_dataset(spec: TrainSpec, bars: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Features and targets of every instrument, pooled and sorted by time (``instrument`` column kept)."""
    if bars is None:
        from mbats.backtest.runner import BacktestSpec, load_bars

        bars = load_bars(BacktestSpec(strategy="", instruments=spec.instruments, granularity=spec.granularity,
                                      start=spec.start, end=spec.end))
    frames = []
    for symbol in spec.instruments:
        frame = make_dataset(bars[symbol], spec.horizon)
        frame.insert(0, "instrument", symbol)
        frames.append(frame)
    data = pd.concat(frames).sort_index(kind="stable")
    data.index.name = "ts"
    if len(data) < min_rows(spec.folds):
        raise MbatsError(too_few_rows(spec, bars, len(data)))
    return data


def min_rows(folds: int) -> int:
    """Usable rows walk-forward validation needs: 50 per test fold and the first training window."""
    return 50 * (folds + 1)


def too_few_rows(spec: TrainSpec, bars: dict[str, pd.DataFrame], rows: int) -> str:
    """Why there is too little data, how many bars would do, and the command that gets them."""
    from datetime import timedelta
    import math

    from mbats.marketdata.calendar import step_of

    need = min_rows(spec.folds)
    per_instrument = math.ceil(need / len(spec.instruments)) + LEADING_NAN_ROWS + spec.horizon
    have = "; ".join(f"{s}: {len(bars[s])} {spec.granularity} bars"
                     + (f" {bars[s].index[0]:%Y-%m-%d %H:%M}..{bars[s].index[-1]:%Y-%m-%d %H:%M}" if len(bars[s]) else "")
                     for s in spec.instruments)
    try:
        bars_a_day = max(1.0, timedelta(days=1) / step_of(spec.granularity))
    except MbatsError:  # weekly/monthly bars
        bars_a_day = 1 / 7
    days = math.ceil(per_instrument / bars_a_day * 7 / 5) + 3  # trading days → calendar days, weekend slack
    end = spec.end or pd.Timestamp.now(tz="UTC")
    start = (pd.Timestamp(end) - timedelta(days=days)).strftime("%Y-%m-%d")
    return (f"only {rows} usable rows for {spec.folds} folds ({have}); each instrument loses its first "
            f"{LEADING_NAN_ROWS} bars to the features' warm-up and its last {spec.horizon} to the target, and "
            f"{spec.folds} folds need {need} rows: about {per_instrument} {spec.granularity} bars per instrument. "
            f"Download more with `mbats data download -i {' -i '.join(spec.instruments)} -g {spec.granularity} "
            f"--start {start}` and train with --start {start} (or lower --folds)")


def score(y: np.ndarray, proba: np.ndarray, fwd_ret: np.ndarray) -> dict[str, float]:
    """Classification quality and the return of trading the sign of the prediction, per bar in bp."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    p = np.clip(proba, 1e-6, 1 - 1e-6)
    position = np.sign(p - 0.5)
    return {
        "accuracy": float(accuracy_score(y, (p > 0.5).astype(int))),
        "auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else 0.5,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "signal_return_bp": float(np.mean(position * fwd_ret) * 1e4),
        "rows": float(len(y)),
    }


def walk_forward(data: pd.DataFrame, spec: TrainSpec) -> tuple[list[dict[str, float]], dict[str, float]]:
    from sklearn.model_selection import TimeSeriesSplit

    X, y, fwd = data[list(FEATURES)], data["target"].to_numpy(), data["fwd_ret"].to_numpy()
    gap = spec.horizon * len(spec.instruments)
    folds, preds, truth, rets = [], [], [], []
    for train_idx, test_idx in TimeSeriesSplit(n_splits=spec.folds, gap=gap).split(X):
        model = make_estimator(spec.model, spec.params, spec.seed).fit(X.iloc[train_idx], y[train_idx])
        proba = model.predict_proba(X.iloc[test_idx])[:, 1]
        folds.append(score(y[test_idx], proba, fwd[test_idx]))
        preds.append(proba), truth.append(y[test_idx]), rets.append(fwd[test_idx])
    oos = score(np.concatenate(truth), np.concatenate(preds), np.concatenate(rets))
    return folds, oos


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model; giving them skips MLflow's slow inference (~5–10 s)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]


def train(spec: TrainSpec, bars: dict[str, pd.DataFrame] | None = None) -> TrainResult:
    """Walk-forward validate, fit on all data, log everything to MLflow, register a ``@challenger`` version."""
    import mlflow
    from mlflow.models import infer_signature

    from mbats import storage
    from mbats.cli.quiet import library_output
    from mbats.ml.registry import client, mlflow_errors
    from mbats.tracking import use_experiment

    started = time.perf_counter()
    settings = get_settings()
    name = spec.model_name or settings.ml_model_name
    data = load_dataset(spec, bars)
    fold_metrics, oos = walk_forward(data, spec)
    X, y = data[list(FEATURES)], data["target"].to_numpy()
    estimator = make_estimator(spec.model, spec.params, spec.seed).fit(X, y)
    data_from, data_to = data.index.min(), data.index.max()
    instruments = ",".join(spec.instruments)

    with mlflow_errors():
        experiment_id = use_experiment(settings.ml_experiment)
        storage.ensure_buckets()
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.model}-{instruments}-{spec.granularity}",
                              tags={"mbats.kind": "training", "mbats.instruments": instruments,
                                    "mbats.granularity": spec.granularity, "mbats.model_name": name}) as run:
            dataset_uri = storage.put_dataset(f"{name}/{run.info.run_id}.parquet", data)
            mlflow.log_params({"model": spec.model, "folds": spec.folds, "horizon": spec.horizon,
                               "seed": spec.seed, "instruments": instruments, "granularity": spec.granularity,
                               "features": ",".join(FEATURES), "rows": len(data),
                               "data_from": data_from.isoformat(), "data_to": data_to.isoformat(),
                               **{f"model.{k}": v for k, v in spec.params.items()}})
            for step, metrics in enumerate(fold_metrics):
                mlflow.log_metrics({f"fold_{k}": v for k, v in metrics.items()}, step=step)
            mlflow.log_metrics({f"oos_{k}": v for k, v in oos.items()})
            mlflow.set_tags({"mbats.dataset_uri": dataset_uri, "mbats.data_from": data_from.isoformat(),
                             "mbats.data_to": data_to.isoformat()})
            mlflow.log_input(mlflow.data.from_pandas(data.reset_index(drop=True), source=dataset_uri,
                                                     name=f"{instruments}-{spec.granularity}", targets="target"),
                             context="training")
            sample = X.tail(5)
            log_started = time.perf_counter()
            with library_output():  # MLflow prints "Successfully registered model" itself
                info = mlflow.sklearn.log_model(
                    estimator, name="model", signature=infer_signature(sample, estimator.predict_proba(sample)),
                    input_example=sample, pip_requirements=pip_requirements(), pyfunc_predict_fn="predict_proba",
                    registered_model_name=name, await_registration_for=60)
            log_model_seconds = time.perf_counter() - log_started
        version = str(info.registered_model_version)
        mlf = client()
        for key, value in {**{f"oos_{k}": v for k, v in oos.items()}, "instruments": instruments,
                           "granularity": spec.granularity, "data_from": data_from.isoformat(),
                           "data_to": data_to.isoformat(), "model": spec.model, "horizon": spec.horizon,
                           "dataset_uri": dataset_uri}.items():
            mlf.set_model_version_tag(name, version, key, str(value))
        mlf.update_model_version(name, version, description=(
            f"{spec.model} on {instruments} {spec.granularity} {data_from:%Y-%m-%d}..{data_to:%Y-%m-%d}, "
            f"{spec.folds}-fold walk-forward OOS auc {oos['auc']:.4f}, accuracy {oos['accuracy']:.4f}"))
        mlf.set_registered_model_alias(name, CHALLENGER, version)
    return TrainResult(name, version, f"models:/{name}/{version}", run.info.run_id, fold_metrics, oos, dataset_uri,
                       len(data), data_from, data_to, estimator, sample, time.perf_counter() - started,
                       log_model_seconds)

