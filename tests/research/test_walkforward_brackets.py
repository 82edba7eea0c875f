"""Walk-forward of a bracket strategy (rsi_atr): in-sample on the sweep core, out of sample on the core's
bracket simulation, each window equal to a backtrader run of the chosen parameters over the same bars."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.errors import MbatsError
from mbats.kernel.strategies import find_strategy
from mbats.research.sweep import sort_key
from mbats.research.walkforward import walk_forward, walk_forward_many

RsiAtr = find_strategy("rsi_atr")
GRID = {"rsi_period": [6, 14], "stop_atr": [0.5, 1.5], "target_atr": [0.7, 3.0]}
COLUMNS = ["instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl", "pnl_net",
           "commission"]


class WindowedRsiAtr(RsiAtr):
    """rsi_atr as the walk-forward trades a test window: run from the training window's first bar (warm
    indicators), entering only from bar ``first_test`` on, flat by the last open (the brackets of a trade
    still open on the bar before are cancelled and it is closed at market)."""

    params = dict(first_test=0, bars=0)

    def next(self):
        bar, data = len(self) - 1, self.datas[0]
        if bar >= self.p.bars - 2:
            if bar == self.p.bars - 2 and self.getposition(data).size:
                for order in list(self.pending[data]):
                    self.cancel(order)
                self.close(data=data)
            return
        if bar >= self.p.first_test:
            super().next()


@pytest.fixture(scope="module")
def bars(eurusd_h1) -> dict[str, pd.DataFrame]:
    return {"EUR_USD": eurusd_h1.iloc[:4000]}


@pytest.fixture(scope="module")
def base() -> BacktestSpec:
    return BacktestSpec("rsi_atr", ["EUR_USD"], "H1", spread_pips=0.8, commission=0.00002)


@pytest.fixture(scope="module")
def result(base, bars):
    return walk_forward(base, bars, GRID, "60D", "30D")


def _window_trades(trades: pd.DataFrame, w) -> pd.DataFrame:
    inside = (trades["entry_ts"] >= w.test_start) & (trades["entry_ts"] < w.test_end)
    return trades[inside].reset_index(drop=True)


def test_each_window_trades_as_backtrader_does_with_the_same_warm_up(result, base, bars):
    frame = bars["EUR_USD"]
    assert len(result.windows) >= 3
    assert {c["oos_engine"] for c in result.chosen} <= {"numba", "numpy"}
    total = 0
    for w, chosen in zip(result.windows, result.chosen):
        history = frame[(frame.index >= w.train_start) & (frame.index < w.test_end)]
        first_test = int((history.index < w.test_start).sum())
        spec = replace(base, params=chosen["params"] | {"first_test": first_test, "bars": len(history)})
        sim = simulate(spec, {"EUR_USD": history}, strategy_cls=WindowedRsiAtr)
        assert not sim.trades["is_open"].astype(bool).any()          # flat at the window's end
        ours = _window_trades(result.trades, w)
        pd.testing.assert_frame_equal(ours[COLUMNS], sim.trades[COLUMNS].reset_index(drop=True),
                                      check_dtype=False, check_exact=True)
        assert chosen["oos_trades"] == len(ours) == chosen["oos_metrics"]["trades"]
        # the window's out-of-sample equity is backtrader's account over the test bars, less its cash
        value = sim.equity["value"] if isinstance(sim.equity, pd.DataFrame) else sim.equity
        oos = result.equity[(result.equity.index >= w.test_start) & (result.equity.index < w.test_end)]
        start = result.equity[result.equity.index < w.test_start]
        start = start.iloc[-1] if len(start) else base.cash
        test_values = value.to_numpy()[first_test:]
        assert len(test_values) == len(oos)
        assert (oos.to_numpy() - start) == pytest.approx(test_values - base.cash, abs=1e-6)
        total += len(ours)
    assert total > 30
    # a cold start at the window boundary would trade differently: the warm-up matters on this data
    w, chosen = result.windows[1], result.chosen[1]
    test_only = frame[(frame.index >= w.test_start) & (frame.index < w.test_end)]
    cold = simulate(replace(base, params=chosen["params"] | {"first_test": 0, "bars": len(test_only)}),
                    {"EUR_USD": test_only}, strategy_cls=WindowedRsiAtr)
    assert not _window_trades(result.trades, w)[COLUMNS].reset_index(drop=True).equals(
        cold.trades[COLUMNS].reset_index(drop=True))


def test_in_sample_winner_is_backtraders_best_on_the_training_bars(result, base, bars):
    frame = bars["EUR_USD"]
    for w, chosen in list(zip(result.windows, result.chosen))[:2]:
        train = {"EUR_USD": frame[(frame.index >= w.train_start) & (frame.index < w.train_end)]}
        scored = []
        for params in ({"rsi_period": r, "stop_atr": s, "target_atr": t} for r in GRID["rsi_period"]
                       for s in GRID["stop_atr"] for t in GRID["target_atr"]):
            from mbats.risk.metrics import compute_metrics

            sim = simulate(replace(base, params=params), train)
            scored.append((compute_metrics(sim.equity["value"], sim.trades, sim.recording.bars,
                                           sim.recording.bars_in_market), params))
        best_metrics, best = min(scored, key=lambda mp: sort_key(mp[0], "sharpe"))
        assert {k: chosen["params"][k] for k in best} == best
        assert chosen["is_score"] == pytest.approx(best_metrics["sharpe"], rel=1e-9)


def test_no_look_ahead_later_bars_change_no_earlier_window(result, base, bars):
    frame = bars["EUR_USD"]
    cut = result.windows[-1].test_start
    shorter = walk_forward(base, {"EUR_USD": frame[frame.index < cut]}, GRID, "60D", "30D")
    for w, c in list(zip(shorter.windows, shorter.chosen))[:-1]:   # the last one is cut short
        mine = result.chosen[result.windows.index(w)]
        assert c["params"] == mine["params"]
        pd.testing.assert_frame_equal(_window_trades(shorter.trades, w), _window_trades(result.trades, w))


def test_equity_is_stitched_and_two_processes_agree(result, base, bars):
    closed = result.trades
    assert result.equity.iloc[-1] - base.cash == pytest.approx(closed["pnl_net"].sum(), abs=1e-6)
    for a, b in zip(result.windows, result.windows[1:]):
        before, after = result.equity[result.equity.index < b.test_start], result.equity[result.equity.index >= b.test_start]
        assert after.iloc[0] == before.iloc[-1]     # no position on a window's first bar: it starts where the last ended
    two = walk_forward_many(base, bars, GRID, "60D", "30D", workers=2)["EUR_USD"]
    pd.testing.assert_series_equal(two.equity, result.equity)
    pd.testing.assert_frame_equal(two.trades, result.trades)


def test_a_bracket_walk_forward_the_core_cannot_model_is_refused(base, bars):
    with pytest.raises(MbatsError, match="walk-forward of rsi_atr: .*fixed sizer"):
        walk_forward(replace(base, sizer="percent:percent=5"), bars, GRID, "60D", "30D")


def test_the_numpy_engine_walks_forward_to_the_same_trades(result, base, bars, monkeypatch):
    from mbats.config import reset_settings_cache

    monkeypatch.setenv("MBATS_COMPILED_CORE", "false")
    reset_settings_cache()
    try:
        numpy = walk_forward(base, bars, GRID, "60D", "30D")
    finally:
        monkeypatch.delenv("MBATS_COMPILED_CORE")
        reset_settings_cache()
    assert {c["oos_engine"] for c in numpy.chosen} == {"numpy"}
    assert {c["oos_engine"] for c in result.chosen} == {"numba"}
    assert [c["params"] for c in numpy.chosen] == [c["params"] for c in result.chosen]
    pd.testing.assert_frame_equal(numpy.trades, result.trades, check_exact=True)
    pd.testing.assert_series_equal(numpy.equity, result.equity, check_exact=True)
