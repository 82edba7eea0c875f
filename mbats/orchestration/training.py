"""Weekly model retraining for the ``model_training`` DAG: train → register @challenger → promote.

Thin JSON-in/JSON-out wrappers over :mod:`mbats.ml` so Airflow passes only small XComs.
"""

from __future__ import annotations

import pandas as pd


def _when(value):
    if value in (None, ""):
        return None
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def train_challenger(instruments: list[str], granularity: str = "H1", start=None, end=None, model: str = "logreg",
                     params: dict | None = None, folds: int = 5, horizon: int = 1,
                     model_name: str | None = None) -> dict:
    """Walk-forward train and register a new ``@challenger`` version; its summary."""
    from mbats.ml.train import TrainSpec, train

    spec = TrainSpec(instruments=list(instruments), granularity=granularity, start=_when(start), end=_when(end),
                     model=model, params=dict(params or {}), folds=folds, horizon=horizon, model_name=model_name)
    result = train(spec)
    return {"model_name": result.model_name, "version": result.version, "model_uri": result.model_uri,
            "run_id": result.run_id, "rows": result.rows, "oos_metrics": {k: float(v) for k, v in result.oos_metrics.items()},
            "data_from": result.data_from.isoformat(), "data_to": result.data_to.isoformat()}


def promote_if_better(model_name: str, metric: str = "oos_auc", min_improvement: float = 0.0) -> dict:
    """Promote ``@challenger`` to ``@champion`` if it beats the champion out of sample."""
    from mbats.ml.registry import promote

    return promote(model_name, metric=metric, min_improvement=min_improvement).as_dict()
