"""Live signal strategies get the backtest's targets bar by bar, whichever way they are computed.

The backtest computes a SignalStrategy's targets once from preloaded bars; a live session (no
preload, one bar at a time) computes them incrementally, on a trailing window, or over the whole
history. For every bundled signal strategy, and for one strategy per mode, both runs see the same
bars and must produce the same target on every bar.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.config import reset_settings_cache
from mbats.kernel.signals import SignalStrategy, has_signals
from mbats.kernel.strategies import available_strategies, coerce_params, find_strategy
from mbats.live.signals import SmaCrossStepper, live_strategy, signal_mode
from mbats.sim import synthetic_bars
from tests.live.conftest import ROOT


def _bars() -> pd.DataFrame:
    """A week of M5 bars with a flat stretch (equal averages: zero differences, no false crosses)."""
    bars = synthetic_bars("EUR_USD", "2024-03-04", "2024-03-09", "M5", seed=5)
    bars = bars[["open", "high", "low", "close", "volume"]].astype(float)
    flat = slice(400, 520)
    price = float(bars["close"].iloc[400])
    bars.iloc[flat, :4] = price
    return bars


def _feed(bars: pd.DataFrame) -> bt.feeds.PandasData:
    return bt.feeds.PandasData(dataname=bars.tz_convert("UTC").tz_localize(None), name="EUR_USD",
                               timeframe=bt.TimeFrame.Minutes, compression=5)


def backtest_targets(cls, bars: pd.DataFrame, params: dict) -> list[int]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(_feed(bars))
    cerebro.addstrategy(cls, **params)
    strat = cerebro.run()[0]
    return list(strat._targets[strat.datas[0]])


def live_targets(cls, bars: pd.DataFrame, params: dict) -> list[int]:
    """A live-style run (no preload, bar by bar) of the class a live session trades, recording its targets."""
    seen: list[int] = []

    class Recording(live_strategy(cls)):
        def next(self):
            super().next()
            data = self.datas[0]
            seen.append(self._targets[data][len(data) - 1])

    cerebro = bt.Cerebro(stdstats=False, preload=False, runonce=False, exactbars=False)
    cerebro.adddata(_feed(bars))
    cerebro.addstrategy(Recording, **params)
    cerebro.run()
    return seen


def bundled_signal_strategies(monkeypatch) -> list[type]:
    monkeypatch.setenv("MBATS_STRATEGIES_DIR", str(ROOT / "strategies"))
    reset_settings_cache()
    found = [cls for cls in available_strategies() if has_signals(cls)]
    assert found, "no bundled signal strategy found"
    return found


def test_every_bundled_signal_strategy_trades_the_backtest_targets_live(monkeypatch):
    bars = _bars()
    for cls in bundled_signal_strategies(monkeypatch):
        grids = [{}]
        if signal_mode(cls, coerce_params(cls, {})) == "incremental":
            grids += [{"fast": "3", "slow": "7", "allow_short": "false"}, {"fast": "20", "slow": "5"},
                      {"fast": "4", "slow": "4"}, {"fast": "1", "slow": "2"}]
        for raw in grids:
            params = coerce_params(cls, raw)
            expected = backtest_targets(cls, bars, params)
            assert len(set(expected)) > 1 or raw == {"fast": "4", "slow": "4"}, "the bars must produce trades"
            assert live_targets(cls, bars, params) == expected, f"{cls.__name__} {raw}"


class Momentum(SignalStrategy):
    """Long when the close is above the close ``period`` bars ago, short below: a bounded window."""

    params = dict(period=12)

    @classmethod
    def signals(cls, bars: pd.DataFrame, period: int = 12) -> pd.Series:
        change = bars["close"] - bars["close"].shift(period)
        return np.sign(change).fillna(0).astype(np.int8)


class WindowedMomentum(Momentum):
    @classmethod
    def signal_lookback(cls, period: int = 12) -> int:
        return period + 1


@pytest.mark.parametrize("cls, mode", [(WindowedMomentum, "window"), (Momentum, "history")])
def test_window_and_history_modes_equal_the_backtest(cls, mode):
    bars = _bars()
    params = {"period": 12}
    assert signal_mode(cls, params) == mode
    expected = backtest_targets(cls, bars, params)
    assert len(set(expected)) == 3
    assert live_targets(cls, bars, params) == expected


def test_stepper_equals_the_vectorised_rule_on_touching_averages():
    from mbats.kernel.indicators import crossover, hold_targets, sma

    closes = pd.Series([1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 3.0, 0.5, 0.5, 0.5, 0.5, 2.0, 2.0])
    for fast, slow, allow_short in [(1, 2, True), (2, 3, False), (3, 2, True), (2, 2, True)]:
        stepper = SmaCrossStepper(fast, slow, allow_short)
        stepped = [stepper.push(c) for c in closes]
        vectorised = hold_targets(crossover(sma(closes, fast), sma(closes, slow)), allow_short).tolist()
        assert stepped == vectorised, (fast, slow, allow_short)


def test_a_paper_session_holds_the_backtest_targets_on_the_bars_it_saw(sim, risk_conn):
    """End to end on the simulator: after each live bar the account holds the backtest's target.

    The backtest runs on exactly the bars the session saw (its backfill, then the live bars, as
    recorded in runs.data_sources), so both start from the same history.
    """
    from mbats.kernel.limits import RiskLimits
    from mbats.live.config import LiveConfig
    from mbats.live.session import run
    from tests.live.conftest import DAY, GRAN, risk_rows, sim_settings

    server = sim(start=f"{DAY}T06:00Z")
    cfg = LiveConfig("sma_crossover", ["EUR_USD"], params={"fast": "3", "slow": "8"}, granularity=GRAN,
                     max_bars=36, warmup=20, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    (sources,), = risk_rows(risk_conn, "SELECT data_sources FROM runs WHERE id = %s", result.run_id)
    held = dict(risk_rows(risk_conn, "SELECT ts, size FROM positions WHERE run_id = %s AND instrument = 'EUR_USD'",
                          result.run_id))
    assert len(held) == result.live_bars == 36
    first = pd.Timestamp(next(s["first"] for s in sources if s["kind"] == "live-backfill"))
    bars = synthetic_bars("EUR_USD", DAY, "2024-03-06", GRAN, seed=11)
    bars = bars[(bars.index >= first) & (bars.index <= max(held))][["open", "high", "low", "close", "volume"]]
    cls = find_strategy("sma_crossover")
    targets = pd.Series(np.asarray(cls.signals(bars.astype(float), fast=3, slow=8), dtype=int), index=bars.index)
    live = {pd.Timestamp(ts): int(np.sign(size)) for ts, size in held.items()}
    assert set(targets[list(live)]) == {-1, 1}, "the window must hold both a long and a short"
    assert live == {ts: int(targets[ts]) for ts in live}
