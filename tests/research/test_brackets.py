"""rsi_atr's stop-loss/take-profit brackets on the compiled sweep core agree with backtrader trade for trade."""

from __future__ import annotations

from dataclasses import replace

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.config import reset_settings_cache
from mbats.kernel.strategies import find_strategy
from mbats.kernel.trades import trades_fingerprint
from mbats.research import core
from mbats.research.grid import expand_grid
from mbats.research.sweep import SweepRequest, run_sweep
from mbats.risk.metrics import compute_metrics

COLUMNS = ["instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl", "pnl_net",
           "commission"]
GRID = {"rsi_period": [6, 14], "stop_atr": [0.5, 1.5], "target_atr": [0.7, 3.0]}


def _specs(base: BacktestSpec, grid: dict) -> list[BacktestSpec]:
    return [replace(base, params=p) for p in expand_grid(grid)]


def _closed(trades: pd.DataFrame) -> pd.DataFrame:
    return trades[~trades["is_open"].astype(bool)]


def _assert_same_trades(scores: core.GridScores, i: int, sim) -> None:
    assert scores.trades[i] == len(_closed(sim.trades))
    assert scores.fingerprints[i] == trades_fingerprint(sim.trades)
    pd.testing.assert_frame_equal(scores.trades_frame(i)[COLUMNS], sim.trades[COLUMNS].reset_index(drop=True),
                                  check_dtype=False, check_exact=True)


class Indicators(bt.Strategy):
    """Records backtrader's own RSI and ATR, the reference for the core's Wilder averages."""

    params = dict(rsi_period=14, atr_period=14)

    def __init__(self):
        self.rsi = bt.ind.RSI(self.data.close, period=self.p.rsi_period)
        self.atr = bt.ind.ATR(self.data, period=self.p.atr_period)


@pytest.mark.parametrize("rsi_period,atr_period", [(2, 3), (14, 14), (30, 7)])
def test_wilder_rsi_and_atr_equal_backtraders_bit_for_bit(eurusd_h1, rsi_period, atr_period):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=eurusd_h1.tz_localize(None)))
    cerebro.addstrategy(Indicators, rsi_period=rsi_period, atr_period=atr_period)
    strategy = cerebro.run()[0]
    rsis, atrs = core.wilder_indicators(eurusd_h1, [rsi_period], [atr_period])
    for ours, theirs in ((rsis[0], strategy.rsi), (atrs[0], strategy.atr)):
        reference = np.asarray(theirs.array[:len(eurusd_h1)], dtype=np.float64)
        assert np.isnan(ours).sum() == np.isnan(reference).sum() > 0
        np.testing.assert_array_equal(ours, reference)   # exact, NaN where backtrader has no value yet


def _exit_kinds(frame: pd.DataFrame, trades: pd.DataFrame, params: dict) -> dict[str, np.ndarray]:
    """Per closed trade: both bracket legs inside the exit bar, a gap through the stop; and the two levels."""
    o, h, low, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    _, atrs = core.wilder_indicators(frame, [params["rsi_period"]], [params.get("atr_period", 14)])
    trades = _closed(trades)
    e = frame.index.get_indexer(trades["entry_ts"])
    x = frame.index.get_indexer(trades["exit_ts"])
    sign = np.where(trades["direction"] == "long", 1.0, -1.0)
    signal = e - 1      # stop and target are set on the close before the entry
    stop = c[signal] - sign * params["stop_atr"] * atrs[0][signal]
    target = c[signal] + sign * params["target_atr"] * atrs[0][signal]
    both = np.where(sign > 0, (low[x] <= stop) & (h[x] >= target), (h[x] >= stop) & (low[x] <= target))
    gap = np.where(sign > 0, o[x] < stop, o[x] > stop)
    return {"both": both, "gap": gap, "stop": stop, "target": target, "open": o[x],
            "exit": trades["exit_price"].to_numpy()}


def test_rsi_atr_grid_scores_on_the_core_agree_with_backtrader_trade_for_trade(eurusd_h1):
    bars = {"EUR_USD": eurusd_h1}
    base = BacktestSpec("rsi_atr", ["EUR_USD"], "H1", spread_pips=0.8, commission=0.00002)
    specs = _specs(base, GRID)
    scores = core.score_grid(find_strategy("rsi_atr"), specs, bars, threads=2, keep=set(range(len(specs))))
    assert scores.engine == "numba"
    assert not any("signals()" in note for note in scores.notes)
    both = gaps = 0
    for i, spec in enumerate(specs):
        sim = simulate(spec, bars)
        assert len(_closed(sim.trades)) > 100
        _assert_same_trades(scores, i, sim)
        reference = compute_metrics(sim.equity["value"], sim.trades, sim.recording.bars, sim.recording.bars_in_market)
        assert scores.metrics[i]["total_return_pct"] == pytest.approx(reference["total_return_pct"], abs=1e-9)
        assert scores.metrics[i]["exposure_pct"] == pytest.approx(reference["exposure_pct"])
        kinds = _exit_kinds(eurusd_h1, sim.trades, {**spec.params, "atr_period": 14})
        # one bar reaching both legs exits at the stop (or at the open when it gapped through it), never the target
        hit = kinds["both"]
        assert np.all((kinds["exit"][hit] == kinds["stop"][hit]) | (kinds["exit"][hit] == kinds["open"][hit]))
        assert not np.any(kinds["exit"][hit & ~kinds["gap"]] == kinds["target"][hit & ~kinds["gap"]])
        # a bar opening beyond the stop exits at that open, worse than the stop
        np.testing.assert_array_equal(kinds["exit"][kinds["gap"]], kinds["open"][kinds["gap"]])
        both, gaps = both + int(hit.sum()), gaps + int(kinds["gap"].sum())
    assert both >= 10 and gaps >= 10     # the grid exercises both rules


@pytest.mark.parametrize("params", [
    dict(rsi_period=20, atr_period=5, oversold=35.0, overbought=65.0, allow_short=False),   # long only, ATR first
    dict(rsi_period=3, atr_period=30, stop_atr=0.0, target_atr=0.2),   # stop at the signal's close, RSI first
], ids=["long-only", "zero-stop"])
def test_other_parameters_agree_with_backtrader_too(eurusd_h1, params):
    bars = {"EUR_USD": eurusd_h1}
    spec = BacktestSpec("rsi_atr", ["EUR_USD"], "H1", params=params, spread_pips=0.8, commission=0.00002)
    scores = core.score_grid(find_strategy("rsi_atr"), [spec], bars, keep={0})
    sim = simulate(spec, bars)
    assert len(_closed(sim.trades)) > 30
    if not params.get("allow_short", True):
        assert set(sim.trades["direction"]) == {"long"}
    _assert_same_trades(scores, 0, sim)


def test_numpy_engine_scores_brackets_like_the_compiled_one(eurusd_h1, numpy_engine):
    bars = {"EUR_USD": eurusd_h1}
    base = BacktestSpec("rsi_atr", ["EUR_USD"], "H1", spread_pips=0.8, commission=0.00002)
    specs = _specs(base, {"rsi_period": [6], "stop_atr": [0.5, 1.5], "target_atr": [0.7], "allow_short": [True, False]})
    fallback = core.score_grid(find_strategy("rsi_atr"), specs, bars)
    assert fallback.engine == "numpy"
    reset_settings_cache()
    compiled = core.score_plan(replace(core.plan_grid(find_strategy("rsi_atr"), specs), compiled=True), bars, threads=2)
    assert compiled.engine == "numba"
    assert fallback.fingerprints == compiled.fingerprints and fallback.metrics == compiled.metrics
    assert fallback.trades[-1] < fallback.trades[-2]     # long only trades less than long and short


# --- hand-built bars: the intrabar rule, gaps and when the bracket becomes active --------------------

def _bars(closes: list[float], exit_bar: dict[str, float] | None = None, entry_range: float = 0.0002) -> pd.DataFrame:
    """Bars opening at the previous close; the entry bar spans ``entry_range``, the bar after it is ``exit_bar``."""
    closes = np.asarray(closes, dtype=np.float64)
    opens = np.concatenate(([closes[0]], closes[:-1]))
    highs = np.maximum(opens, closes) + 0.0002
    lows = np.minimum(opens, closes) - 0.0002
    e, x = ENTRY, ENTRY + 1
    highs[e], lows[e] = max(opens[e], closes[e]) + entry_range, min(opens[e], closes[e]) - entry_range
    if exit_bar:
        opens[x], highs[x], lows[x], closes[x] = (exit_bar[k] for k in ("open", "high", "low", "close"))
        opens[x + 1] = closes[x]
        highs[x + 1], lows[x + 1] = max(highs[x + 1], opens[x + 1]), min(lows[x + 1], opens[x + 1])
    index = pd.date_range("2024-03-04", periods=len(closes), freq="min", tz="UTC", name="ts")
    return pd.DataFrame({"open": opens, "high": highs, "low": lows, "close": closes, "volume": 1.0}, index=index)


# one up and four down moves, then a rise on bar 6: RSI(2) falls to ~3 and turns up out of oversold there (and its
# mirror image down out of overbought), so the parent fills at bar 7's open. Both first moves are needed: backtrader
# divides by the average down move (ZeroDivisionError while it is 0).
DOWN_THEN_UP = [1.1000, 1.1005, 1.0995, 1.0985, 1.0975, 1.0965, 1.0980, 1.0981, 1.0981, 1.0982, 1.0980, 1.0981, 1.0979]
ENTRY = 7
PARAMS = dict(rsi_period=2, atr_period=2, stop_atr=1.0, target_atr=1.0)


def _levels(closes: list[float]) -> tuple[float, float]:
    frame = _bars(closes)
    _, atrs = core.wilder_indicators(frame, [2], [2])
    close, atr = frame["close"].iloc[ENTRY - 1], atrs[0][ENTRY - 1]
    return close - 1.0 * atr, close + 1.0 * atr      # as rsi_atr sets them on the signal bar's close


def _mirror(frame: pd.DataFrame) -> pd.DataFrame:
    """The same moves upside down (a short where there was a long)."""
    flipped = 2.2 - frame
    return flipped.assign(high=flipped["low"], low=flipped["high"], volume=1.0)


def _run_both(frame: pd.DataFrame) -> tuple[pd.DataFrame, core.GridScores]:
    bars = {"EUR_USD": frame}
    spec = BacktestSpec("rsi_atr", ["EUR_USD"], "M1", params=PARAMS, spread_pips=0.5, commission=0.00002)
    sim = simulate(spec, bars)
    scores = core.score_grid(find_strategy("rsi_atr"), [spec], bars, keep={0})
    _assert_same_trades(scores, 0, sim)
    assert len(sim.trades) >= 1
    return sim.trades, scores


@pytest.mark.parametrize("case", ["both_legs", "gap_through_stop", "gap_through_target", "target_only"])
@pytest.mark.parametrize("mirrored", [False, True], ids=["long", "short"])
def test_hand_built_exit_bar_fills_as_backtrader_does(case, mirrored):
    stop, target = _levels(DOWN_THEN_UP)
    mid = (stop + target) / 2
    exit_bar, expected = {
        "both_legs": (dict(open=mid, high=target + 0.0005, low=stop - 0.0005, close=mid), "stop"),
        "gap_through_stop": (dict(open=stop - 0.0010, high=stop - 0.0008, low=stop - 0.0012, close=stop - 0.0009),
                             "open"),
        "gap_through_target": (dict(open=target + 0.0010, high=target + 0.0012, low=target + 0.0008,
                                    close=target + 0.0009), "open"),
        "target_only": (dict(open=mid, high=target + 0.0001, low=mid - 0.00001, close=mid), "target"),
    }[case]
    frame = _bars(DOWN_THEN_UP, exit_bar)
    if mirrored:
        frame = _mirror(frame)
        stop, target = 2.2 - stop, 2.2 - target
    trades, _ = _run_both(frame)
    first = trades.iloc[0]
    assert first["direction"] == ("short" if mirrored else "long")
    assert first["entry_ts"] == frame.index[ENTRY] and first["entry_price"] == frame["open"].iloc[ENTRY]
    assert first["exit_ts"] == frame.index[ENTRY + 1]
    level = {"stop": stop, "target": target, "open": frame["open"].iloc[ENTRY + 1]}[expected]
    # the recorder recovers the exit price from the P&L: equal to the fill within a rounding
    assert first["exit_price"] == pytest.approx(level, abs=1e-12)
    if expected == "stop":
        assert first["pnl"] < 0


def test_bracket_is_not_active_on_its_entry_bar():
    """The entry bar's own range reaches both legs: backtrader activates the children only from the next bar."""
    stop, target = _levels(DOWN_THEN_UP)
    frame = _bars(DOWN_THEN_UP, entry_range=0.05)
    assert frame["low"].iloc[ENTRY] < stop and frame["high"].iloc[ENTRY] > target
    trades, _ = _run_both(frame)
    assert trades.iloc[0]["entry_ts"] == frame.index[ENTRY]
    assert trades.iloc[0]["is_open"] or trades.iloc[0]["exit_ts"] > frame.index[ENTRY]


# --- sweeps -------------------------------------------------------------------------------------

def test_rsi_atr_sweep_takes_the_fast_path_and_its_reruns_agree(eurusd_h1):
    bars = {"EUR_USD": eurusd_h1}
    base = BacktestSpec("rsi_atr", ["EUR_USD"], "H1", spread_pips=0.8)
    result = run_sweep(SweepRequest(base, {"rsi_period": [6, 14], "stop_atr": [0.5, 1.5]}, top=2, workers=2,
                                    track=False, record=False), bars)
    assert result.engine == "numba"
    assert len(result.scores) == 4 and len(result.rerun) == 2
    assert all(s.agrees for s in result.rerun), [s.difference for s in result.rerun]
    assert all(s.metrics.get("sharpe") is not None for s in result.scores)   # every configuration scored


def test_rsi_atr_grid_the_core_cannot_model_runs_in_backtrader_and_says_so(eurusd_h1):
    short = eurusd_h1.iloc[:600]
    bars = {"EUR_USD": short, "GBP_USD": short.assign(open=short["open"] + 0.17, high=short["high"] + 0.17,
                                                     low=short["low"] + 0.17, close=short["close"] + 0.17)}
    base = BacktestSpec("rsi_atr", ["EUR_USD", "GBP_USD"], "H1", spread_pips=0.8)
    result = run_sweep(SweepRequest(base, {"stop_atr": [0.5, 1.5]}, top=1, workers=1, track=False, record=False), bars)
    assert result.engine == "backtrader"
    assert any("cannot model" in n and "one instrument" in n for n in result.notes)
    assert len(result.rerun) == 2     # every configuration ran in backtrader


def test_optuna_search_scores_rsi_atr_on_the_core(eurusd_h1):
    import uuid

    from mbats.errors import UsageError
    from mbats.research.search import SearchRequest, run_search

    base = BacktestSpec("rsi_atr", ["EUR_USD"], "H1", spread_pips=0.8)
    grid = {"rsi_period": [6, 10, 14], "stop_atr": [0.5, 1.0, 1.5], "target_atr": [1.0, 3.0]}
    sweep = SweepRequest(base, grid, top=1, workers=1, track=False, record=False)
    result = run_search(SearchRequest(sweep, trials=6, seed=3, study=f"rsi-atr-{uuid.uuid4().hex[:8]}"),
                        bars={"EUR_USD": eurusd_h1})
    assert result.engine == "numba" and len(result.scores) >= 4
    assert len(result.rerun) == 1 and result.rerun[0].agrees, result.rerun[0].difference
    two = replace(sweep, base=replace(base, instruments=["EUR_USD", "GBP_USD"]))
    with pytest.raises(UsageError, match="cannot model"):
        run_search(SearchRequest(two, trials=2, seed=3, study=f"rsi-atr-{uuid.uuid4().hex[:8]}"))
