"""The out-of-sample step of a walk-forward for a bracket strategy (``rsi_atr``), on the sweep's core.

Same rules as a signal strategy's out-of-sample step (:func:`mbats.research.walkforward._run_window`):

* indicators (Wilder's RSI and ATR, :func:`mbats.research.core.wilder_indicators`) are computed on the
  training and test bars together, so the test window starts warm: a value on a test bar is the one
  backtrader has there after running from the training window's first bar, and never uses a later bar;
* entries are taken only on test-window closes: none before the test window (nothing is carried in)
  and none on its last two bars;
* the account is flat by the window's last open: a bracket still open then is closed at that open (as a
  signal strategy's position is), so every trade of the window closes inside it.

Between those, the brackets are the core's own simulation (:func:`mbats.research.brackets.bracket_one`,
compiled by numba, or its numpy twin), which agrees with backtrader's bracket fills trade for trade.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mbats.backtest.runner import BacktestSpec
from mbats.kernel.costs import fill_cost_per_unit
from mbats.research import brackets as bracket_rules
from mbats.research import core
from mbats.research.vectorised import fixed_units


def bracket_window(cls: type, base: BacktestSpec, history: pd.DataFrame, test_start: pd.Timestamp,
                   params: dict) -> dict:
    """Trade ``params`` on ``history``'s bars from ``test_start`` on (earlier bars only warm indicators up).

    Returns the window's trades (dicts, as :func:`~mbats.research.vectorised.trade_targets` gives them),
    its P&L per test bar relative to the window's start, the test bars in the market and the engine.
    """
    symbol = base.instruments[0]
    decl = cls.compiled_signals
    value = lambda name: params[getattr(decl, name)]  # noqa: E731
    rsi_period, atr_period = int(value("rsi_period")), int(value("atr_period"))
    kernels = core._kernels()
    rules = kernels if kernels is not None else bracket_rules
    market = core._Market.of(symbol, history)
    n = len(market.opens)
    first_test = int(np.searchsorted(market.index, test_start))
    rsis, atrs = core.wilder_indicators(market, [rsi_period], [atr_period], kernels)
    entries = np.zeros(n, np.int8)
    rules.rsi_entries(rsis[0], max(rsi_period, atr_period), float(value("oversold")), float(value("overbought")),
                      bool(value("allow_short")), entries)
    entries[:first_test] = 0     # nothing carried into the test window
    entries[max(n - 2, 0):] = 0  # flat by the last open: no entry filling at it (as target[-2:] = 0)

    units, half_spread, rate = fixed_units(base.sizer), fill_cost_per_unit(base, symbol), base.commission
    stop_k, target_k = float(value("stop_atr")), float(value("target_atr"))
    cut = max(n - 1, 0)          # simulate up to the bar before the last; the last bar's open closes what is open
    prices = (market.opens[:cut], market.highs[:cut], market.lows[:cut], market.closes[:cut], entries[:cut], atrs[0][:cut])
    no_days = np.empty(0, np.int64)

    def run(count: int, write: bool) -> tuple[int, core.ColumnarTrades]:
        columns = core.ColumnarTrades.empty(np.array([count], np.int64))
        trades = (columns.entry_bar, columns.exit_bar, columns.side, columns.entry_price, columns.exit_price,
                  columns.pnl, columns.pnl_net, columns.commission)
        made = rules.bracket_one(*prices, stop_k, target_k, units, half_spread, rate, float(base.cash), no_days,
                                 market.times_ns[:cut], 0, write, *trades, np.empty(0), np.empty(6))
        return int(made), columns

    count, _ = run(0, False)
    _, columns = run(count, True)
    entry_comm = units * (half_spread + market.opens[columns.entry_bar] * rate)   # as bracket_one books the entry
    if count and columns.exit_bar[-1] < 0:        # still open: closed at the last open
        _close_at(columns, count - 1, n - 1, float(market.opens[n - 1]), units, half_spread, rate, entry_comm[-1])

    held = np.zeros(n, np.int64)
    flow = np.zeros(n)
    for k in range(count):
        e, x, size = int(columns.entry_bar[k]), int(columns.exit_bar[k]), int(columns.side[k]) * units
        held[e:x] = size
        flow[e] -= size * market.opens[e] + entry_comm[k]
        # the exit returns the entry's outlay plus the trade's P&L, less the exit's own commission
        flow[x] += size * market.opens[e] + columns.pnl[k] - (columns.commission[k] - entry_comm[k])
    pnl = np.cumsum(flow) + held * market.closes
    trades = core._trades_frame(market, units, columns, 0).drop(columns="trade_ref")
    in_test = np.arange(n) >= first_test
    return {"trades": trades.to_dict("records"), "pnl": pd.Series(pnl, index=market.index)[in_test],
            "in_market": int((held[in_test] != 0).sum()), "engine": "numba" if kernels is not None else "numpy"}


def _close_at(columns: core.ColumnarTrades, k: int, bar: int, price: float, units: int, half_spread: float,
              rate: float, entry_comm: float) -> None:
    """Close trade ``k`` at ``price`` on ``bar`` with a market order, booked as ``bracket_one`` books its exits."""
    comm = units * (half_spread + price * rate)
    bracket_rules.book_exit(k, bar, price, int(columns.side[k]), float(columns.entry_price[k]), units, entry_comm,
                            comm, columns.exit_bar, columns.exit_price, columns.pnl, columns.commission,
                            columns.pnl_net)
