"""The ML strategy decides the same bar by bar (live/paper path, features from the feed's recent
bars) as with the whole frame predicted at once (backtest path)."""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from ml_servers import planted_bars
from mbats.ml import registry
from mbats.ml.features import FEATURES, make_dataset
from mbats.ml.models import make_estimator


class _Proba:
    def __init__(self, estimator):
        self.estimator = estimator

    def predict(self, frame):
        return self.estimator.predict_proba(frame[list(FEATURES)])


def _run(cls, bars: pd.DataFrame, feed) -> list[tuple]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed)
    cerebro.broker.setcash(100_000)
    cerebro.addsizer(bt.sizers.FixedSize, stake=1000)
    # A window longer than the data: the live path sees the same history as the whole-frame path.
    cerebro.addstrategy(cls, window=len(bars) + 1)
    strategy = cerebro.run()[0]
    return [(o.ordtype, bt.num2date(o.created.dt)) for o in strategy._orders]


def test_live_path_orders_equal_backtest_path_orders(monkeypatch):
    from mbats.backtest.feed import make_feed
    from mbats.kernel.strategies import find_strategy

    bars = planted_bars(n_weeks=2).set_index("ts")
    data = make_dataset(bars)
    estimator = make_estimator("logreg").fit(data[list(FEATURES)], data["target"])
    cls = find_strategy("ml_signal")
    monkeypatch.setattr(registry, "load_model", lambda uri: _Proba(estimator))
    monkeypatch.setattr(cls, "model_ref", classmethod(
        lambda c, p: registry.Resolved("m", "champion", "7", "models:/m/7", "models:/m@champion")))
    monkeypatch.setattr(registry, "version_run_id", lambda name, version: f"run-of-{name}-{version}")

    whole = _run(cls, bars, make_feed("AUD_CAD", "H1", bars))
    # A plain pandas feed has no `bars` parameter: the strategy takes the live path.
    live = _run(cls, bars, bt.feeds.PandasData(dataname=bars.tz_localize(None), name="AUD_CAD",
                                               timeframe=bt.TimeFrame.Minutes, compression=60))
    assert len(whole) > 10
    assert live == whole
    assert cls.run_metadata({}) == {"model_uri": "models:/m@champion", "model_version": "7", "model_name": "m",
                                    "model_run_id": "run-of-m-7"}
