"""Metrics checked against hand calculations."""

import math

import numpy as np
import pandas as pd
import pytest

from mbats.risk.metrics import compute_metrics, drawdown


def trades(pnls):
    return pd.DataFrame({"pnl_net": pnls, "is_open": [False] * len(pnls)})


def test_drawdown_depth_and_duration():
    idx = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    equity = pd.Series([100.0, 110.0, 99.0, 104.5, 111.0, 111.0], index=idx)
    np.testing.assert_allclose(drawdown(equity).to_numpy(), [0, 0, -10, -5, 0, 0])
    m = compute_metrics(equity, trades([]), bars=6, bars_in_market=3)
    assert m["max_drawdown_pct"] == pytest.approx(10.0)
    assert m["max_drawdown_days"] == pytest.approx(3.0)  # peak on day 2, recovered on day 5
    assert m["total_return_pct"] == pytest.approx(11.0)
    assert m["exposure_pct"] == pytest.approx(50.0)


def test_trade_statistics():
    idx = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    pnls = [30.0, -10.0, 20.0, -20.0]
    m = compute_metrics(pd.Series([100.0, 101.0, 102.0], index=idx), trades(pnls), bars=3, bars_in_market=3)
    assert m["trades"] == 4
    assert m["win_rate_pct"] == pytest.approx(50.0)
    assert m["profit_factor"] == pytest.approx(50.0 / 30.0)
    assert m["expectancy"] == pytest.approx(5.0)
    assert m["sqn"] == pytest.approx(math.sqrt(4) * 5.0 / np.std(pnls, ddof=1))


def test_return_ratios_and_var_on_daily_returns():
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0005, 0.01, 500)
    idx = pd.date_range("2022-01-01", periods=501, freq="D", tz="UTC")
    equity = pd.Series(100_000 * np.concatenate([[1.0], np.cumprod(1 + returns)]), index=idx)
    m = compute_metrics(equity, trades([]), bars=501, bars_in_market=0)
    assert m["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(252), rel=1e-6)
    assert m["annual_volatility_pct"] == pytest.approx(100 * returns.std(ddof=1) * math.sqrt(252), rel=1e-6)
    assert m["var_95_1d_pct"] == pytest.approx(-100 * np.percentile(returns, 5), rel=1e-6)
    assert m["cvar_95_1d_pct"] >= m["var_95_1d_pct"] > 0
    assert m["profit_factor"] is None and m["win_rate_pct"] is None  # no trades: no made-up numbers


def test_an_unrecovered_drawdown_counts_to_the_end():
    idx = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    m = compute_metrics(pd.Series([100.0, 120.0, 90.0, 95.0], index=idx), trades([]), bars=4, bars_in_market=0)
    assert m["max_drawdown_pct"] == pytest.approx(25.0)
    assert m["max_drawdown_days"] == pytest.approx(2.0)
