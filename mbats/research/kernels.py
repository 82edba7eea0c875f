"""numba kernels of the compiled sweep core (imported only when numba is installed and enabled).

Every kernel repeats, operation for operation, the numpy expressions of
:mod:`mbats.research.core` (the fallback) and :mod:`mbats.research.vectorised`, which are themselves
bit-identical to backtrader: same float operations in the same order, so prices, P&L and equity
agree to the last bit. Loops run over bars; ``prange`` spreads configurations over threads, which
all read the same price columns (no copies per worker).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from mbats.research import brackets

_OPTS = dict(cache=True, nogil=True)


@numba.njit(**_OPTS)
def exact_sma(ints: np.ndarray, period: int, scale: float, out: np.ndarray) -> None:
    """SMA from prices as exact integers: the window sum is exact, one rounding like ``math.fsum``.

    Stronger than a compensated (Neumaier/Kahan) running sum, whose result can still differ from
    fsum's correctly rounded one in the last bit; that bit decides crossings where the averages tie.
    The integers are summed as high and low 31-bit parts (no int64 overflow for any window up to
    2**21 bars); both part sums are exact doubles, so adding them rounds once, correctly.
    """
    s_hi = 0
    s_lo = 0
    for i in range(len(ints)):
        v = ints[i]
        s_hi += v >> 31
        s_lo += v & 0x7FFFFFFF
        if i >= period:
            w = ints[i - period]
            s_hi -= w >> 31
            s_lo -= w & 0x7FFFFFFF
        out[i] = ((float(s_hi) * 2147483648.0 + float(s_lo)) * scale) / period if i >= period - 1 else np.nan


@numba.njit(parallel=True, **_OPTS)
def sma_matrix(ints: np.ndarray, periods: np.ndarray, scale: float, out: np.ndarray) -> None:
    for j in prange(len(periods)):
        exact_sma(ints, periods[j], scale, out[j])


@numba.njit(**_OPTS)
def sma_cross_targets(fast: np.ndarray, slow: np.ndarray, allow_short: bool, out: np.ndarray) -> None:
    """bt.ind.CrossOver (against the last non-zero difference) held as a target, like hold_targets."""
    last = np.nan
    seeded = False
    state = 0
    for i in range(len(out)):
        diff = fast[i] - slow[i]
        if not math.isnan(diff):
            if seeded:
                if last < 0.0 and diff > 0.0:
                    state = 1
                elif last > 0.0 and diff < 0.0:
                    state = -1
                if diff != 0.0:
                    last = diff
            else:  # backtrader seeds with the first difference, even 0
                last = diff
                seeded = True
        out[i] = 0 if (state < 0 and not allow_short) else state


@numba.njit(**_OPTS)
def count_one(target: np.ndarray) -> int:
    """Trades (closed and the one left open) of one target series: entries into a position."""
    prev = 0
    k = 0
    for i in range(1, len(target)):
        pos = target[i - 1]
        if pos != prev:
            if pos != 0:
                k += 1
            prev = pos
    return k


@numba.njit(parallel=True, **_OPTS)
def count_trades(targets: np.ndarray, counts: np.ndarray) -> None:
    for c in prange(targets.shape[0]):
        counts[c] = count_one(targets[c])


@numba.njit(**_OPTS)
def sma_cross_from_ints(ints, scale, fast_period, slow_period, allow_short, out) -> None:
    """sma_cross_targets of the two exact SMAs computed in the same pass (no SMA arrays)."""
    f_hi = f_lo = s_hi = s_lo = 0
    start = max(fast_period, slow_period) - 1
    last = np.nan
    seeded = False
    state = 0
    for i in range(len(ints)):
        v_hi, v_lo = ints[i] >> 31, ints[i] & 0x7FFFFFFF
        f_hi += v_hi
        f_lo += v_lo
        s_hi += v_hi
        s_lo += v_lo
        if i >= fast_period:
            f_hi -= ints[i - fast_period] >> 31
            f_lo -= ints[i - fast_period] & 0x7FFFFFFF
        if i >= slow_period:
            s_hi -= ints[i - slow_period] >> 31
            s_lo -= ints[i - slow_period] & 0x7FFFFFFF
        if i >= start:         # the same values exact_sma gives, the same rule as sma_cross_targets
            fast = ((float(f_hi) * 2147483648.0 + float(f_lo)) * scale) / fast_period
            slow = ((float(s_hi) * 2147483648.0 + float(s_lo)) * scale) / slow_period
            diff = fast - slow
            if seeded:
                if last < 0.0 and diff > 0.0:
                    state = 1
                elif last > 0.0 and diff < 0.0:
                    state = -1
                if diff != 0.0:
                    last = diff
            else:
                last = diff
                seeded = True
        out[i] = 0 if (state < 0 and not allow_short) else state


@numba.njit(**_OPTS)
def sma_targets_of(c, smas, ints, scale, periods, fast_idx, slow_idx, allow_short, target) -> None:
    """Targets of configuration c: from the grid's SMA matrix, or (an empty matrix: a grid too big to
    hold every SMA) from the two SMAs recomputed in one pass, the same exact values."""
    if smas.shape[0] > 0:
        sma_cross_targets(smas[fast_idx[c]], smas[slow_idx[c]], allow_short[c], target)
    else:
        sma_cross_from_ints(ints, scale, periods[fast_idx[c]], periods[slow_idx[c]], allow_short[c], target)


@numba.njit(parallel=True, **_OPTS)
def sma_targets_grid(smas, ints, scale, periods, fast_idx, slow_idx, allow_short, out) -> None:
    """Targets of a chunk of configurations into ``out`` (configurations x bars)."""
    for c in prange(len(fast_idx)):
        sma_targets_of(c, smas, ints, scale, periods, fast_idx, slow_idx, allow_short, out[c])


@numba.njit(parallel=True, **_OPTS)
def sma_count_grid(smas, ints, scale, periods, fast_idx, slow_idx, allow_short, counts) -> None:
    """count_trades of SMA-crossover targets made on the fly (one bar-length buffer per configuration)."""
    for c in prange(len(fast_idx)):
        target = np.empty(len(ints), np.int8)
        sma_targets_of(c, smas, ints, scale, periods, fast_idx, slow_idx, allow_short, target)
        counts[c] = count_one(target)


@numba.njit(**_OPTS)
def simulate_one(opens, closes, target, units, half_spread, rate, cash0, day_last, times, first,
                 e_bar, x_bar, side, entry_px, exit_px, pnl, pnl_net, comm_out, daily, stats) -> None:
    """One configuration: fills at the next open, trades from ``first`` on, equity stats, daily values."""
    n = len(opens)
    flows = 0.0           # np.cumsum of the per-bar cash flows
    peak = -np.inf
    trough = np.inf
    dd_min = np.inf
    last_peak = -1
    longest = -1          # ns; -1: never under water
    in_market = 0
    prev = 0
    k = first
    closed = 0
    open_k = -1
    open_comm = 0.0
    d = 0
    value = cash0
    start_value = cash0
    for i in range(n):
        pos = target[i - 1] if i > 0 else 0
        flow = 0.0
        if pos != prev:
            price = opens[i]
            comm = units * (half_spread + price * rate)
            a = (-(-prev * units)) * price - comm if prev != 0 else 0.0
            b = (-(pos * units)) * price - comm if pos != 0 else 0.0
            flow = 0.0 + (a + b)
            if prev != 0:      # close the open trade at this open
                brackets.book_exit(open_k, i, price, prev, entry_px[open_k], units, open_comm, comm, x_bar, exit_px,
                                   pnl, comm_out, pnl_net)
                closed += 1
            if pos != 0:       # open a new one
                size = pos * units
                e_bar[k] = i
                x_bar[k] = -1
                side[k] = pos
                entry_px[k] = (size * price) / size
                exit_px[k] = np.nan
                pnl[k] = np.nan
                pnl_net[k] = np.nan
                comm_out[k] = np.nan
                open_comm = comm
                open_k = k
                k += 1
            prev = pos
        flows += flow
        value = (cash0 + flows) + (0.0 + (pos * units) * closes[i])
        if i == 0:
            start_value = value
        if pos != 0:
            in_market += 1
        if value >= peak:      # a peak: close the stretch under water since the last one
            if last_peak >= 0 and i - last_peak > 1:
                longest = max(longest, times[i] - times[last_peak])
            last_peak = i
            peak = value
            trough = value
            if dd_min > 0.0:   # 100 * (value / value - 1) is exactly 0
                dd_min = 0.0
        elif value < trough:   # under one peak the deepest drawdown is at the lowest value: divide only there
            trough = value
            dd = 100.0 * (value / peak - 1.0)
            if dd < dd_min:
                dd_min = dd
        if d < len(day_last) and day_last[d] == i:
            daily[d] = value
            d += 1
    if n > 0 and n - 1 - last_peak > 0:
        longest = max(longest, times[n - 1] - times[last_peak])
    stats[0] = start_value
    stats[1] = value
    stats[2] = dd_min
    stats[3] = float(longest)
    stats[4] = float(in_market)
    stats[5] = float(closed)


@numba.njit(parallel=True, **_OPTS)
def simulate_grid(opens, closes, targets, units, half_spread, rate, cash0, day_last, times, offsets,
                  e_bar, x_bar, side, entry_px, exit_px, pnl, pnl_net, comm, daily, stats) -> None:
    for c in prange(targets.shape[0]):
        simulate_one(opens, closes, targets[c], units, half_spread, rate, cash0, day_last, times, offsets[c],
                     e_bar, x_bar, side, entry_px, exit_px, pnl, pnl_net, comm, daily[c], stats[c])


@numba.njit(parallel=True, **_OPTS)
def sma_simulate_grid(smas, ints, scale, periods, fast_idx, slow_idx, allow_short, opens, closes, units, half_spread,
                      rate, cash0, day_last, times, offsets, e_bar, x_bar, side, entry_px, exit_px, pnl, pnl_net, comm,
                      daily, stats) -> None:
    """simulate_grid of SMA-crossover targets recomputed on the fly: no targets matrix in memory."""
    for c in prange(len(fast_idx)):
        target = np.empty(len(opens), np.int8)
        sma_targets_of(c, smas, ints, scale, periods, fast_idx, slow_idx, allow_short, target)
        simulate_one(opens, closes, target, units, half_spread, rate, cash0, day_last, times, offsets[c],
                     e_bar, x_bar, side, entry_px, exit_px, pnl, pnl_net, comm, daily[c], stats[c])


# --- brackets (the rules are in mbats.research.brackets, which the numpy engine runs uncompiled) ----

smma = numba.njit(**_OPTS)(brackets.smma)
rsi_entries = numba.njit(**_OPTS)(brackets.rsi_entries)
bracket_one = numba.njit(**_OPTS)(brackets.bracket_one)


@numba.njit(parallel=True, **_OPTS)
def smma_matrix(values, periods, seeds, out) -> None:
    """Wilder averages of one series, one row per distinct period (each once per grid)."""
    for j in prange(len(periods)):
        smma(values, periods[j], seeds[j], out[j])


@numba.njit(parallel=True, **_OPTS)
def bracket_grid(opens, highs, lows, closes, rsis, atrs, rsi_idx, atr_idx, starts, oversold, overbought, allow_short,
                 stop_k, target_k, units, half_spread, rate, cash0, day_last, times, write, offsets, e_bar, x_bar,
                 side, entry_px, exit_px, pnl, pnl_net, comm, daily, stats, counts) -> None:
    """Configurations of a bracket grid over threads: counts only (``write`` False), or trades and equity."""
    for c in prange(len(rsi_idx)):
        entries = np.empty(len(opens), np.int8)
        rsi_entries(rsis[rsi_idx[c]], starts[c], oversold[c], overbought[c], allow_short[c], entries)
        counts[c] = bracket_one(opens, highs, lows, closes, entries, atrs[atr_idx[c]], stop_k[c], target_k[c], units,
                                half_spread, rate, cash0, day_last, times, offsets[c], write, e_bar, x_bar, side,
                                entry_px, exit_px, pnl, pnl_net, comm, daily[c], stats[c])
