"""Trade on a registered model: long when it expects a rise, short when it expects a fall.

The model is loaded from the MLflow registry by alias (``models:/<name>@champion`` by default)
through pyfunc; its inputs come from :func:`mbats.ml.features.build_features`, the same function
training used. The version the alias points to is recorded in the run (``model_version``).
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.ml.features import FEATURES, build_features
from mbats.ml.serve import up_probability


class MlSignal(bt.Strategy):
    """Long above ``threshold`` probability of an up move, short below ``1 - threshold``, hold in between."""

    params = dict(
        model_name="",          # registered model; empty = MBATS_ML_MODEL_NAME
        alias="champion",       # registry alias to trade on
        version="",             # pin a version instead of the alias
        threshold=0.55,         # probability needed to enter
        allow_short=True,
        window=300,             # bars of history per live prediction (EWM features settle to ~1e-9 by then)
    )
    param_bounds = {"threshold": (0.0, 1.0), "window": (1, 100_000)}

    @classmethod
    def model_ref(cls, params: dict) -> registry.Resolved:
        from mbats.ml import registry  # here: it loads scikit-learn, which discovering strategies does not need

        name = registry.model_name(params.get("model_name") or None)
        version = str(params.get("version") or "")
        if version:
            uri = f"models:/{name}/{version}"
            return registry.Resolved(name, "", version, uri, uri)
        return registry.resolve(name, params.get("alias") or "champion")

    @classmethod
    def run_metadata(cls, params: dict) -> dict:
        """Columns of the run row (the backtest runner records them): which model this run trades on."""
        declared = {k: getattr(cls.params, k) for k in cls.params._getkeys()}
        ref = cls.model_ref({**declared, **params})
        from mbats.ml import registry

        return {"model_uri": ref.alias_uri, "model_version": ref.version, "model_name": ref.name,
                "model_run_id": registry.version_run_id(ref.name, ref.version)}

    def __init__(self):
        ref = self.model_ref({k: getattr(self.p, k) for k in self.p._getkeys()})
        self.model_version = ref.version
        from mbats.ml import registry

        self.model = registry.load_model(ref.uri)
        self.pending = {d: None for d in self.datas}
        # Backtests hand the whole bar frame over: predict it in one call (features are causal,
        # so row t equals what a bar-by-bar run would compute).
        self.precomputed = {}
        for data in self.datas:
            bars = getattr(data.p, "bars", None)
            if isinstance(bars, pd.DataFrame):
                self.precomputed[data] = self._predict_frame(bars)

    def _predict_frame(self, bars: pd.DataFrame) -> np.ndarray:
        features = build_features(bars)
        proba = np.full(len(features), np.nan)
        valid = features.notna().all(axis=1).to_numpy()
        if valid.any():
            proba[valid] = up_probability(self.model.predict(features.loc[valid, list(FEATURES)]))
        return proba

    def _live_probability(self, data) -> float:
        """Paper/live: features from the last ``window`` bars held by the feed."""
        n = min(len(data), self.p.window)
        if n < 2:
            return float("nan")  # warm-up rows come back as NaN from the features anyway
        index = pd.DatetimeIndex([bt.num2date(x) for x in data.datetime.get(size=n)]).tz_localize("UTC")
        bars = pd.DataFrame({f: np.asarray(getattr(data, f).get(size=n)) for f in ("open", "high", "low", "close")},
                            index=index)
        return float(self._predict_frame(bars)[-1])

    def notify_order(self, order):
        # Notifications carry clones of the order: match by reference number.
        pending = self.pending.get(order.data)
        if not order.alive() and pending is not None and pending.ref == order.ref:
            self.pending[order.data] = None

    def next(self):
        for data in self.datas:
            if self.pending[data] is not None:
                continue
            if data in self.precomputed:
                p = self.precomputed[data][len(data) - 1]
            else:
                p = self._live_probability(data)
            if np.isnan(p):
                continue
            size = self.getposition(data).size
            if p > self.p.threshold and size <= 0:
                if size < 0:
                    self.close(data=data)
                self.pending[data] = self.buy(data=data)
            elif p < 1.0 - self.p.threshold and size >= 0:
                if size > 0:
                    self.close(data=data)
                if self.p.allow_short:
                    self.pending[data] = self.sell(data=data)
