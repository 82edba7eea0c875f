"""Iterative indicators equal pandas rolling; walk-forward never tests on data it trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec
from mbats.research.rolling import RollingMax, RollingMean, RollingMin, RollingStd, RollingSum
from mbats.research.walkforward import walk_forward, walk_forward_windows


@pytest.mark.parametrize("period", [1, 5, 390])
def test_iterative_indicators_equal_pandas_rolling(gbpusd_m1, period):
    close = gbpusd_m1["close"]
    rolling = close.rolling(period)
    cases = [(RollingSum, rolling.sum()), (RollingMean, rolling.mean()), (RollingMax, rolling.max()),
             (RollingMin, rolling.min())]
    if period > 1:
        cases.append((RollingStd, rolling.std()))
    values = close.tolist()
    for cls, expected in cases:
        indicator = cls(period)
        got = np.array([indicator.update(x) for x in values])
        if cls in (RollingMax, RollingMin):
            np.testing.assert_array_equal(got, expected.to_numpy(), err_msg=cls.__name__)
        else:
            np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-9 if cls is RollingStd else 1e-12,
                                       equal_nan=True, err_msg=cls.__name__)


def test_rolling_mean_does_not_drift_over_300k_updates():
    rng = np.random.default_rng(7)
    values = 1.1 + rng.normal(0, 1e-4, 300_000).cumsum() * 0.01
    mean = RollingMean(390)
    for x in values:
        mean.update(x)
    assert mean.value == pytest.approx(values[-390:].mean(), rel=1e-14)


def test_walk_forward_windows_never_overlap(eurusd_h1):
    windows = walk_forward_windows(eurusd_h1.index, "60D", "20D")
    assert len(windows) > 5
    for w in windows:
        assert w.train_start < w.train_end == w.test_start < w.test_end
    for a, b in zip(windows, windows[1:]):
        assert a.test_end <= b.test_start           # test windows are disjoint and in order
    assert windows[-1].test_end > eurusd_h1.index[-1]  # the data is used to its end


def test_a_short_tail_joins_the_last_test_window_instead_of_being_scored_alone(eurusd_h1):
    """Two days left after the last full window: scored alone their Sharpe was ~345 (the mean of the
    other windows' was under 7), so they are traded on by the window before, with its parameters."""
    bars = eurusd_h1[(eurusd_h1.index >= "2017-05-01") & (eurusd_h1.index < "2018-01-01")]
    windows = walk_forward_windows(bars.index, "60D", "30D")
    assert windows[-1].test_end > bars.index[-1] and windows[-2].test_end == windows[-1].test_start
    assert all(w.test_end - w.test_start >= pd.Timedelta("15D") for w in windows)
    assert windows[-1].test_end - windows[-1].test_start < pd.Timedelta("45D")
    spec = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", spread_pips=1.0)
    result = walk_forward(spec, {"EUR_USD": bars}, {"fast": [5, 10], "slow": [30, 60]}, "60D", "30D")
    scores = [c["oos_score"] for c in result.chosen]
    assert len(scores) == len(windows) and all(abs(s) < 20 for s in scores), scores


def test_walk_forward_reports_out_of_sample_only(eurusd_h1):
    spec = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", spread_pips=1.0)
    result = walk_forward(spec, {"EUR_USD": eurusd_h1}, {"fast": [5, 10], "slow": [30, 60]}, "90D", "30D")
    first_test = result.windows[0].test_start
    assert result.equity.index[0] >= first_test
    assert len(result.trades) > 10
    assert (result.trades["entry_ts"] >= first_test).all()
    for w in result.windows:  # every trade lies inside one test window
        inside = (result.trades["entry_ts"] >= w.test_start) & (result.trades["entry_ts"] < w.test_end)
        closed = result.trades[inside & ~result.trades["is_open"].astype(bool)]
        assert (closed["exit_ts"] < w.test_end).all()
    assert {c["params"]["fast"] for c in result.chosen} <= {5, 10}
    assert result.metrics["trades"] == float(len(result.trades))
    pnl = result.trades["pnl_net"].sum()
    assert result.equity.iloc[-1] - spec.cash == pytest.approx(pnl, abs=1e-6)
