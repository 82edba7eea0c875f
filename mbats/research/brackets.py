"""Stop-loss/take-profit brackets on the sweep core: Wilder's RSI and ATR and backtrader's bracket fills.

The functions here are plain Python on numpy arrays: :mod:`mbats.research.kernels`
compiles the same functions with numba (``book_exit`` is marked for that where numba is installed), and the numpy engine (numba missing or
``MBATS_COMPILED_CORE=false``) runs them as they are, so both engines compute the same bits.

Indicators, as backtrader computes them (``bt.ind.RSI`` and ``bt.ind.ATR`` with their default
``SmoothedMovingAverage``):

* ``upday = max(close - close[-1], 0)``, ``downday = max(close[-1] - close, 0)``,
  ``truerange = max(high, close[-1]) - min(low, close[-1])`` (valid from the second bar);
* Wilder smoothing of period *p*: seeded on bar *p* with ``math.fsum`` of the first *p* valid values
  divided by *p* (backtrader's ``Average``), then ``prev * (1 - 1/p) + x * (1/p)``;
* ``rsi = 100 - 100 / (1 + smma(upday) / smma(downday))``. Where ``smma(downday)`` is exactly 0
  backtrader raises ZeroDivisionError (the run fails); here the RSI is 100 (or NaN for 0/0).

Entries (:func:`rsi_entries`): the strategy's ``next()`` runs from bar ``max(rsi_period,
atr_period)`` on (every indicator has a value); it buys when ``rsi[-1] < oversold <= rsi[0]`` and,
with ``allow_short``, sells when ``rsi[-1] > overbought >= rsi[0]``, and only while flat with no
bracket pending.

Brackets (:func:`bracket_one`), backtrader's ``buy_bracket``/``sell_bracket`` with a market parent on
its ``BackBroker`` (no slippage: MBATS books spread and slippage as commission):

* the signal on bar *i*'s close sets ``stop = close ∓ stop_atr * atr`` and
  ``target = close ± target_atr * atr`` (the expressions of ``strategies/rsi_atr.py``); the parent
  fills at bar *i+1*'s open;
* the stop and target children become active on the bar **after** the parent's fill (the broker
  queues them in ``_toactivate`` and activates them at the start of its next bar), so the entry
  bar never exits;
* from then on, each bar checks the stop first and then the target (the order they were submitted
  in); the first to fill cancels the other (OCO). So when one bar's range holds both, **the stop
  wins**;
* a stop fills at the bar's open if the bar opens at or beyond it (a gap), else at the stop price if
  the bar's low (long) / high (short) reaches it; a target fills at the open if the bar opens at or
  better than it, else at the target if the high (long) / low (short) reaches it;
* the strategy may enter again on the close of the exit bar (the broker notifies the fill and the
  cancel before the strategy's ``next``); an entry signalled on the last bar never fills.

Every fill pays ``units * (half_spread + price * commission)``; trade prices and P&L use the same
float expressions as :func:`mbats.research.kernels.simulate_one`, which agree with backtrader bit for
bit.
"""

from __future__ import annotations

import math

import numpy as np

try:  # numba compiles book_exit into the kernels that call it; without numba it stays plain Python
    from numba.extending import register_jitable as _compilable
except ImportError:
    def _compilable(fn):
        return fn


@_compilable
def book_exit(k, bar, price, pos, entry, units, open_comm, comm, x_bar, exit_px, pnl, comm_out, pnl_net) -> None:
    """Write trade ``k``'s exit: ``pos`` (+1/-1) closed at ``price`` on ``bar``, entry and exit commissions.

    The float expressions of backtrader's Trade (``pnl`` from ``size * (price - entry)``, the exit
    price recovered from it), which every engine of the core books through this one function.
    """
    size = pos * units
    p = (-(-size)) * (price - entry) * 1.0
    commission = (0.0 + open_comm) + comm
    x_bar[k] = bar
    exit_px[k] = entry + float(pos) * p / units
    pnl[k] = p
    comm_out[k] = commission
    pnl_net[k] = p - commission


def day_moves(closes: np.ndarray, highs: np.ndarray, lows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upday, downday, truerange) per bar, NaN on the first bar, as backtrader's UpDay/DownDay/TrueRange."""
    prev = np.concatenate(([np.nan], closes[:-1]))
    up = np.maximum(closes - prev, 0.0)
    down = np.maximum(prev - closes, 0.0)
    true_range = np.maximum(highs, prev) - np.minimum(lows, prev)
    return up, down, true_range


def smma_seed(values: np.ndarray, period: int) -> float:
    """backtrader's seed of a Wilder average of values valid from bar 1: fsum of bars 1..period / period."""
    return math.fsum(values[1:period + 1].tolist()) / period


def smma(values: np.ndarray, period: int, seed: float, out: np.ndarray) -> None:
    """Wilder's smoothing (backtrader's SmoothedMovingAverage) of ``values`` valid from bar 1.

    NaN before bar ``period``, where backtrader has no value yet either.
    """
    alpha = 1.0 / period
    alpha1 = 1.0 - alpha
    n = len(values)
    for i in range(min(period, n)):
        out[i] = np.nan
    if period >= n:
        return
    prev = seed
    out[period] = prev
    for i in range(period + 1, n):
        prev = prev * alpha1 + values[i] * alpha
        out[i] = prev


def rsi_entries(rsi: np.ndarray, start: int, oversold: float, overbought: float, allow_short: bool,
                out: np.ndarray) -> None:
    """+1 where RSI turns up out of oversold, -1 (``allow_short``) down out of overbought, from bar ``start``."""
    n = len(rsi)
    for i in range(n):
        out[i] = 0
    for i in range(max(start, 1), n):
        before = rsi[i - 1]
        now = rsi[i]
        if before < oversold and oversold <= now:
            out[i] = 1
        elif allow_short and before > overbought and overbought >= now:
            out[i] = -1


def bracket_one(opens, highs, lows, closes, entries, atr, stop_k, target_k, units, half_spread, rate, cash0,
                day_last, times, first, write, e_bar, x_bar, side, entry_px, exit_px, pnl, pnl_net, comm_out,
                daily, stats) -> int:
    """One configuration trading brackets on ``entries``; returns its trade count (closed and open).

    ``write`` False only counts (the trade arrays may be empty); True writes the trades from row
    ``first`` on, the daily values and ``stats`` (as :func:`mbats.research.kernels.simulate_one`).
    """
    n = len(opens)
    flows = 0.0
    peak = -np.inf
    trough = np.inf
    dd_min = np.inf
    last_peak = -1
    longest = -1
    in_market = 0
    k = first
    count = 0
    closed = 0
    open_k = -1
    open_comm = 0.0
    entry = 0.0
    entered = -1          # bar of the open position's entry fill
    pos = 0
    pending = 0           # side of a parent order waiting for the next open
    stop = 0.0
    target = 0.0
    d = 0
    value = cash0
    start_value = cash0
    for i in range(n):
        flow = 0.0
        if pending != 0:                       # the parent fills at this open
            price = opens[i]
            comm = units * (half_spread + price * rate)
            pos = pending
            pending = 0
            flow = 0.0 + ((-(pos * units)) * price - comm)
            size = pos * units
            entry = (size * price) / size
            entered = i
            count += 1
            if write:
                e_bar[k] = i
                x_bar[k] = -1
                side[k] = pos
                entry_px[k] = entry
                exit_px[k] = np.nan
                pnl[k] = np.nan
                pnl_net[k] = np.nan
                comm_out[k] = np.nan
                open_k = k
                k += 1
            open_comm = comm
        elif pos != 0 and i > entered:         # children active from the bar after the fill: stop, then target
            price = np.nan
            if pos > 0:
                if opens[i] <= stop:
                    price = opens[i]
                elif lows[i] <= stop:
                    price = stop
                elif target <= opens[i]:
                    price = opens[i]
                elif target <= highs[i]:
                    price = target
            else:
                if opens[i] >= stop:
                    price = opens[i]
                elif highs[i] >= stop:
                    price = stop
                elif target >= opens[i]:
                    price = opens[i]
                elif target >= lows[i]:
                    price = target
            if not math.isnan(price):
                comm = units * (half_spread + price * rate)
                flow = 0.0 + ((-(-pos * units)) * price - comm)
                if write:
                    book_exit(open_k, i, price, pos, entry, units, open_comm, comm, x_bar, exit_px, pnl, comm_out,
                              pnl_net)
                closed += 1
                pos = 0
        if pos == 0 and pending == 0 and entries[i] != 0:   # the strategy's next() on this close
            pending = 1 if entries[i] > 0 else -1     # a plain int: numpy's int8 would overflow pos * units
            reach = atr[i]
            if pending > 0:
                stop = closes[i] - stop_k * reach
                target = closes[i] + target_k * reach
            else:
                stop = closes[i] + stop_k * reach
                target = closes[i] - target_k * reach
        if not write:
            continue
        flows += flow
        value = (cash0 + flows) + (0.0 + (pos * units) * closes[i])
        if i == 0:
            start_value = value
        if pos != 0:
            in_market += 1
        if value >= peak:
            if last_peak >= 0 and i - last_peak > 1:
                longest = max(longest, times[i] - times[last_peak])
            last_peak = i
            peak = value
            trough = value
            if dd_min > 0.0:
                dd_min = 0.0
        elif value < trough:
            trough = value
            dd = 100.0 * (value / peak - 1.0)
            if dd < dd_min:
                dd_min = dd
        if d < len(day_last) and day_last[d] == i:
            daily[d] = value
            d += 1
    if write:
        if n > 0 and n - 1 - last_peak > 0:
            longest = max(longest, times[n - 1] - times[last_peak])
        stats[0] = start_value
        stats[1] = value
        stats[2] = dd_min
        stats[3] = float(longest)
        stats[4] = float(in_market)
        stats[5] = float(closed)
    return count
