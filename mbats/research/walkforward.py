"""Walk-forward optimisation: pick the best configuration on a training window, trade it on the
next (unseen) window, roll forward by the test length, and report metrics of the stitched
out-of-sample results only.

Windows are half-open ``[start, end)`` in time; each test window starts where its training window
ends and test windows follow each other without overlap. Indicators are warmed up on the bars
before the test window (they were known at the time), but only test-window trades count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mbats.backtest.runner import BacktestSpec
from mbats.kernel.costs import fill_cost_per_unit
from mbats.kernel.strategies import coerce_params, find_strategy
from mbats.errors import MbatsError
from mbats.research.grid import expand_grid
from mbats.research.sweep import sort_key
from mbats.research.vectorised import fixed_units, trade_targets, vector_simulate
from mbats.risk.metrics import compute_metrics


@dataclass(frozen=True)
class Window:
    train_start: pd.Timestamp
    train_end: pd.Timestamp   # = test_start
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def walk_forward_windows(index: pd.DatetimeIndex, train: pd.Timedelta | str, test: pd.Timedelta | str) -> list[Window]:
    """Consecutive (train, test) windows over ``index``; the last test window may be shorter."""
    train, test = pd.Timedelta(train), pd.Timedelta(test)
    if train <= pd.Timedelta(0) or test <= pd.Timedelta(0):
        raise MbatsError("walk-forward train and test lengths must be positive")
    if len(index) == 0:
        return []
    first, last = index[0], index[-1]
    windows: list[Window] = []
    start = first
    while start + train <= last:
        test_start = start + train
        test_end = min(test_start + test, last + pd.Timedelta(1, "ns"))
        windows.append(Window(start, test_start, test_start, test_end))
        start = start + test
    return windows


@dataclass
class WalkForwardResult:
    windows: list[Window]
    chosen: list[dict]            # per window: params and the in-sample score
    trades: pd.DataFrame          # out-of-sample trades only
    equity: pd.Series             # stitched out-of-sample account value
    metrics: dict[str, float | None]


def walk_forward(base: BacktestSpec, bars: dict[str, pd.DataFrame], grid: dict[str, list],
                 train: pd.Timedelta | str, test: pd.Timedelta | str, rank_by: str = "sharpe") -> WalkForwardResult:
    """Optimise ``grid`` vectorised on each training window, trade the winner on the test window."""
    cls = find_strategy(base.strategy)
    if len(base.instruments) != 1:
        raise MbatsError("walk-forward runs on one instrument at a time")
    symbol = base.instruments[0]
    frame = bars[symbol]
    configs = [coerce_params(cls, dict(base.params) | c) for c in expand_grid(grid)]
    windows = walk_forward_windows(frame.index, train, test)
    if not windows:
        raise MbatsError("not enough data for one training window plus a test window")
    units = fixed_units(base.sizer)
    half_spread = fill_cost_per_unit(base, symbol)  # half the spread plus any slippage, as backtrader books it
    defaults = {k: getattr(cls.params, k) for k in cls.params._getkeys()}
    chosen, trades, pieces = [], [], []
    bars_in_market = 0
    value = base.cash
    for w in windows:
        in_sample = {symbol: frame[(frame.index >= w.train_start) & (frame.index < w.train_end)]}
        scored = [(vector_simulate(replace(base, params=p), in_sample, cls).metrics, p) for p in configs]
        metrics, best = min(scored, key=lambda mp: sort_key(mp[0], rank_by))
        chosen.append({"window": w, "params": best, f"train_{rank_by}": metrics.get(rank_by)})
        # signals on train+test (warm-up), positions forced flat before the test window
        history = frame[(frame.index >= w.train_start) & (frame.index < w.test_end)]
        target = np.asarray(cls.signals(history, **(defaults | best)), dtype=np.int64)
        in_test = history.index >= w.test_start
        target[~in_test] = 0
        target[-2:] = 0  # flat by the window's last open, so each window's trades close inside it
        leg = trade_targets(symbol, history, target, units, half_spread, base.commission)
        trades += [t for t in leg.trades if t["entry_ts"] >= w.test_start]
        cash = value + np.cumsum(leg.cash_flow)
        held = leg.units_held * history["close"].to_numpy()
        piece = pd.Series(cash + held, index=history.index)[in_test]
        pieces.append(piece)
        bars_in_market += int((leg.units_held[in_test] != 0).sum())
        value = float(piece.iloc[-1]) if len(piece) else value
    equity = pd.concat(pieces)
    trade_frame = pd.DataFrame(trades)
    metrics = compute_metrics(equity, trade_frame if len(trade_frame) else pd.DataFrame(
        {"is_open": pd.Series(dtype=bool), "pnl_net": pd.Series(dtype=float)}), len(equity), bars_in_market)
    return WalkForwardResult(windows, chosen, trade_frame, equity, metrics)
