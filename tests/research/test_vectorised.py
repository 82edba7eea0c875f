"""Vectorised simulation and backtrader agree trade for trade on the bundled signal strategies."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.kernel.trades import trades_fingerprint
from mbats.kernel.strategies import find_strategy
from mbats.kernel.indicators import crossover, sma
from mbats.research.vectorised import vector_simulate
from mbats.risk.metrics import compute_metrics

FINGERPRINT = ["instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl_net"]


class IndicatorSmaCrossover(bt.Strategy):
    """SmaCrossover as it was before it declared signals: backtrader's own SMA/CrossOver indicators."""

    params = dict(fast=10, slow=30, allow_short=True)

    def __init__(self):
        self.cross = {d: bt.ind.CrossOver(bt.ind.SMA(d.close, period=self.p.fast),
                                          bt.ind.SMA(d.close, period=self.p.slow)) for d in self.datas}

    def next(self):
        for data, cross in self.cross.items():
            position = self.getposition(data).size
            if cross[0] > 0 and position <= 0:
                if position < 0:
                    self.close(data)
                self.buy(data)
            elif cross[0] < 0 and position >= 0:
                if position > 0:
                    self.close(data)
                if self.p.allow_short:
                    self.sell(data)


CASES = [
    ("EUR_USD", "H1", dict(fast=10, slow=30), 1.2, 0.00002),
    ("EUR_USD", "H1", dict(fast=5, slow=40, allow_short=False), 0.8, 0.0),
    ("GBP_USD", "M1", dict(fast=4, slow=12), 1.0, 0.00001),
]


@pytest.fixture
def sample(request, eurusd_h1, gbpusd_m1):
    return {"EUR_USD": eurusd_h1, "GBP_USD": gbpusd_m1}


@pytest.mark.parametrize("symbol,granularity,params,spread,commission", CASES)
def test_vectorised_trades_equal_backtrader(sample, symbol, granularity, params, spread, commission):
    bars = {symbol: sample[symbol]}
    spec = BacktestSpec("sma_crossover", [symbol], granularity, params=params, spread_pips=spread,
                        commission=commission)
    backtrader_run = simulate(spec, bars)
    vector_run = vector_simulate(spec, bars)
    assert len(backtrader_run.trades) > 50
    pd.testing.assert_frame_equal(vector_run.trades[FINGERPRINT].reset_index(drop=True),
                                  backtrader_run.trades[FINGERPRINT].reset_index(drop=True), check_dtype=False,
                                  check_exact=True)
    assert trades_fingerprint(vector_run.trades) == trades_fingerprint(backtrader_run.trades)
    closed_v, closed_b = vector_run.trades[~vector_run.trades.is_open], backtrader_run.trades[~backtrader_run.trades.is_open]
    for col in ("commission", "return_pct", "mfe_pct", "mae_pct", "bars_held"):
        np.testing.assert_array_equal(closed_v[col].to_numpy(float), closed_b[col].to_numpy(float), err_msg=col)
    bt_metrics = compute_metrics(backtrader_run.equity["value"], backtrader_run.trades, backtrader_run.recording.bars,
                                 backtrader_run.recording.bars_in_market)
    assert vector_run.metrics["trades"] == bt_metrics["trades"]
    assert vector_run.metrics["exposure_pct"] == bt_metrics["exposure_pct"]
    for key in ("total_return_pct", "max_drawdown_pct", "sharpe"):
        assert vector_run.metrics[key] == pytest.approx(bt_metrics[key], rel=1e-9, abs=1e-9), key
    np.testing.assert_allclose(vector_run.equity["value"], backtrader_run.equity["value"], rtol=0, atol=1e-6)


def test_signal_strategy_trades_like_the_indicator_version(eurusd_h1):
    """Declaring signals did not change SmaCrossover's trades (backtrader's SMA/CrossOver vs ours)."""
    spec = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", params=dict(fast=7, slow=21), spread_pips=1.0)
    signal_run = simulate(spec, {"EUR_USD": eurusd_h1})
    indicator_run = simulate(spec, {"EUR_USD": eurusd_h1}, IndicatorSmaCrossover)
    assert len(signal_run.trades) > 100
    assert trades_fingerprint(signal_run.trades) == trades_fingerprint(indicator_run.trades)


def test_sma_is_bit_identical_to_backtrader_and_crossover_uses_last_nonzero_difference(eurusd_h1):
    close = eurusd_h1["close"].iloc[:400]
    ours = sma(close, 13).to_numpy()
    expected = [np.nan] * 12 + [__import__("math").fsum(close.iloc[i - 12:i + 1]) / 13 for i in range(12, len(close))]
    np.testing.assert_array_equal(ours, np.array(expected))
    # touching (difference 0) and separating again in the same direction is not a cross
    fast = pd.Series([1.0, 2.0, 3.0, 3.0, 4.0, 2.0, 1.0])
    slow = pd.Series([2.0, 2.5, 2.5, 3.0, 3.0, 3.0, 3.0])
    assert crossover(fast, slow).tolist() == [0, 0, 1, 0, 0, -1, 0]


def test_signal_strategy_is_found_and_keeps_its_parameters():
    cls = find_strategy("sma_crossover")
    assert cls.__name__ == "SmaCrossover"
    assert {k: getattr(cls.params, k) for k in cls.params._getkeys()} == dict(fast=10, slow=30, allow_short=True)


@pytest.mark.parametrize("symbol", ["USD_JPY", "EUR_GBP"])
def test_vectorised_converts_like_backtrader_for_pairs_quoted_outside_the_account_currency(eurusd_h1, symbol):
    """USD_JPY (1/USD_JPY) and EUR_GBP (through GBP_USD) in a USD account: same trades, P&L in USD, bit for bit."""
    from mbats.research.core import unsupported

    scale = {"USD_JPY": 135.0, "EUR_GBP": 0.79}[symbol]
    bars = {symbol: _scaled(eurusd_h1, scale)}
    if symbol == "EUR_GBP":
        bars["GBP_USD"] = _scaled(eurusd_h1.iloc[::-1].set_axis(eurusd_h1.index), 1.16)  # its own path
    spec = BacktestSpec("sma_crossover", [symbol], "H1", params=dict(fast=10, slow=30), spread_pips=1.5,
                        commission=0.00002, account_currency="USD")
    backtrader_run = simulate(spec, bars)
    vector_run = vector_simulate(spec, bars)
    assert len(backtrader_run.trades) > 50
    assert vector_run.trades["pnl"].abs().max() < 1_000  # USD, not yen
    pd.testing.assert_frame_equal(vector_run.trades[FINGERPRINT].reset_index(drop=True),
                                  backtrader_run.trades[FINGERPRINT].reset_index(drop=True), check_dtype=False,
                                  check_exact=True)
    assert trades_fingerprint(vector_run.trades) == trades_fingerprint(backtrader_run.trades)
    np.testing.assert_allclose(vector_run.equity["value"], backtrader_run.equity["value"], rtol=0, atol=1e-6)
    # the compiled core books in the quote currency and says so (the sweep then runs vector_simulate)
    assert "must be converted from" in unsupported(find_strategy("sma_crossover"), [spec])


def _scaled(frame: pd.DataFrame, factor: float) -> pd.DataFrame:
    out = frame.copy()
    out[["open", "high", "low", "close"]] *= factor
    return out
