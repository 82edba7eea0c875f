"""Metrics checked against hand calculations."""

import math

import numpy as np
import pandas as pd
import pytest

from mbats.risk.metrics import FX_DAYS_PER_YEAR, compute_metrics, drawdown, fx_daily, fx_day_labels


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
    idx = pd.bdate_range("2022-01-03 12:00", periods=501, tz="UTC")  # one bar per FX day (weekday noon)
    equity = pd.Series(100_000 * np.concatenate([[1.0], np.cumprod(1 + returns)]), index=idx)
    m = compute_metrics(equity, trades([]), bars=501, bars_in_market=0)
    assert FX_DAYS_PER_YEAR == 260  # 5 FX days x 52 weeks
    assert m["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(260), rel=1e-6)
    assert m["annual_volatility_pct"] == pytest.approx(100 * returns.std(ddof=1) * math.sqrt(260), rel=1e-6)
    assert m["var_95_1d_pct"] == pytest.approx(-100 * np.percentile(returns, 5), rel=1e-6)
    assert m["cvar_95_1d_pct"] >= m["var_95_1d_pct"] > 0
    assert m["profit_factor"] is None and m["win_rate_pct"] is None  # no trades: no made-up numbers


def test_an_unrecovered_drawdown_counts_to_the_end():
    idx = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    m = compute_metrics(pd.Series([100.0, 120.0, 90.0, 95.0], index=idx), trades([]), bars=4, bars_in_market=0)
    assert m["max_drawdown_pct"] == pytest.approx(25.0)
    assert m["max_drawdown_days"] == pytest.approx(2.0)


def test_fx_days_end_at_17_new_york_and_a_week_has_five():
    # Two weeks of H1 bars as OANDA serves them: Sunday 22:00 UTC (17:00 EST) to Friday 21:00 UTC.
    idx = pd.date_range("2024-01-07 22:00", "2024-01-19 21:00", freq="h", tz="UTC")
    idx = idx[~((idx.dayofweek == 5) | ((idx.dayofweek == 4) & (idx.hour >= 22)) | ((idx.dayofweek == 6) & (idx.hour < 22)))]
    equity = pd.Series(np.arange(len(idx), dtype=float) + 100.0, index=idx)
    daily = fx_daily(equity)
    assert len(daily) == 10                                   # 5 per week; no Sunday day
    assert list(daily.index.dayofweek) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]  # each day's last bar is on its own weekday
    assert (daily.index.hour == 21).all()                     # the 21:00 UTC bar (16:00 EST) closes each FX day
    sunday_evening = pd.DatetimeIndex(["2024-01-07 22:00", "2024-01-08 21:59"], tz="UTC")
    labels = fx_day_labels(sunday_evening)
    assert labels[0] == labels[1] == pd.Timestamp("2024-01-08").value // 86_400_000_000_000  # both Monday's


def test_fx_day_boundary_follows_new_york_daylight_saving():
    # 20:59 UTC is 16:59 EDT in July (Tuesday's) but 21:00 UTC is 17:00 EDT (Wednesday's).
    summer = pd.DatetimeIndex(["2024-07-02 20:59", "2024-07-02 21:00"], tz="UTC")
    tuesday = pd.Timestamp("2024-07-02").value // 86_400_000_000_000
    assert list(fx_day_labels(summer)) == [tuesday, tuesday + 1]


def test_sunday_bars_do_not_add_return_days():
    # Daily candles stamped at the session start (Sunday..Thursday 22:00 UTC) are Monday..Friday.
    idx = pd.DatetimeIndex(["2024-01-07 22:00", "2024-01-08 22:00", "2024-01-09 22:00", "2024-01-10 22:00",
                            "2024-01-11 22:00", "2024-01-14 22:00"], tz="UTC")
    equity = pd.Series([100.0, 101.0, 99.0, 102.0, 103.0, 104.0], index=idx)
    daily = fx_daily(equity)
    assert len(daily) == 6                                   # six FX days, none merged, none a Sunday
    returns = daily.pct_change().dropna()
    m = compute_metrics(equity, trades([]), bars=6, bars_in_market=0)
    assert m["annual_volatility_pct"] == pytest.approx(100 * returns.std(ddof=1) * math.sqrt(260), rel=1e-9)
    # The old UTC-calendar reading would have counted the two Sunday bars as separate days of their own.
    assert set(pd.DatetimeIndex(equity.index).dayofweek) & {6}


def test_a_boundary_bar_a_few_microseconds_early_is_still_on_its_own_day():
    # backtrader's float dates stamp the 22:00 UTC (17:00 EST) bar at 21:59:59.999997
    idx = pd.DatetimeIndex(["2024-01-08 21:59:59.999997", "2024-01-08 22:00:00"], tz="UTC")
    labels = fx_day_labels(idx)
    assert labels[0] == labels[1] == pd.Timestamp("2024-01-09").value // 86_400_000_000_000
