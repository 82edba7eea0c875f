"""Vectorised indicators that reproduce backtrader's values bit for bit.

Vectorised research only ranks configurations honestly if its signals are the ones backtrader
trades on. Backtrader's SMA is ``math.fsum(window) / period`` (a correctly rounded sum), so a
plain float rolling mean can differ in the last bit and flip a crossover where the two averages
touch. :func:`sma` sums the exact binary values of the prices as integers instead, then rounds
once, which is what ``fsum`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_MANTISSA_BITS = 53


def _exact_window_sums(values: np.ndarray, period: int) -> np.ndarray:
    """Correctly rounded sums of each trailing window (NaN before the first full window)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    if len(x) < period:
        return out
    if not np.isfinite(x).all():
        raise ValueError("prices must be finite")
    mant, expo = np.frexp(x)                       # x = mant * 2**expo, 0.5 <= |mant| < 1
    base = int(expo.min()) - _MANTISSA_BITS
    shift = (expo - expo.min()).astype(np.int64)
    ints = (mant * 2.0**_MANTISSA_BITS).astype(np.int64)   # exact: 53-bit integers
    bits = _MANTISSA_BITS + int(shift.max()) + int(np.ceil(np.log2(period))) + 1
    if bits <= 62:
        # Split into 31-bit halves so the cumulative sums cannot overflow int64.
        ints = ints << shift
        lo, hi = ints & ((1 << 31) - 1), ints >> 31
        csum_lo = np.concatenate(([0], np.cumsum(lo)))
        csum_hi = np.concatenate(([0], np.cumsum(hi)))
        win = ((csum_hi[period:] - csum_hi[:-period]) << 31) + (csum_lo[period:] - csum_lo[:-period])
        sums = win.astype(np.float64)              # int64 -> float64 rounds to nearest even
    else:  # very wide price ranges or long windows: Python integers, slower but still exact
        big = np.array([int(i) << int(s) for i, s in zip(ints, shift)], dtype=object)
        csum = np.concatenate(([0], np.cumsum(big)))
        sums = (csum[period:] - csum[:-period]).astype(np.float64)
    out[period - 1:] = np.ldexp(sums, base)
    return out


def sma(close: pd.Series, period: int) -> pd.Series:
    """Simple moving average, identical to ``bt.ind.SMA`` (NaN until ``period`` bars)."""
    return pd.Series(_exact_window_sums(close.to_numpy(), period) / period, index=close.index)


def crossover(fast: pd.Series, slow: pd.Series) -> pd.Series:
    """+1 where ``fast`` crosses above ``slow``, -1 where it crosses below, else 0.

    Same rule as ``bt.ind.CrossOver``: compare with the last *non-zero* difference, so
    touching and moving apart again is not a cross.
    """
    diff = (fast - slow).to_numpy()
    valid = ~np.isnan(diff)
    nonzero = np.where(valid & (diff != 0.0), diff, np.nan)
    first = int(np.argmax(valid)) if valid.any() else len(diff)
    if first < len(diff):
        nonzero[first] = diff[first]               # backtrader seeds with the first value, even 0
    last_nonzero = pd.Series(nonzero).ffill().to_numpy()
    before = np.concatenate(([np.nan], last_nonzero[:-1]))
    up = (before < 0.0) & (diff > 0.0)
    down = (before > 0.0) & (diff < 0.0)
    return pd.Series(up.astype(np.int8) - down.astype(np.int8), index=fast.index)


def hold_targets(cross: pd.Series, allow_short: bool = True) -> pd.Series:
    """Target position after each bar: +1 after an up-cross, -1 (or 0) after a down-cross."""
    target = cross.replace(0, np.nan).ffill().fillna(0.0)
    if not allow_short:
        target = target.clip(lower=0.0)
    return target.astype(np.int8)


@dataclass(frozen=True)
class SmaCross:
    """Declares compiled signals (``compiled_signals = SmaCross()`` on a SignalStrategy).

    The signals are ``hold_targets(crossover(sma(close, fast), sma(close, slow)), allow_short)``;
    sweeps then compute them in :mod:`mbats.research.kernels` (each distinct SMA once per grid)
    instead of calling ``signals()`` per configuration. The fields name the strategy parameters
    holding each value. Declaring it for signals that are not this rule would score the wrong
    trades, which the sweep's backtrader re-runs would flag as disagreements.
    """

    fast: str = "fast"
    slow: str = "slow"
    allow_short: str = "allow_short"


@dataclass(frozen=True)
class RsiAtrBrackets:
    """Declares compiled brackets (``compiled_signals = RsiAtrBrackets()`` on a backtrader strategy).

    The strategy enters with a bracket when Wilder's RSI (``bt.ind.RSI``) turns up out of
    ``oversold`` (long) or down out of ``overbought`` (short, with ``allow_short``), while flat with
    no bracket pending; the stop-loss is ``stop_atr`` and the take-profit ``target_atr`` ATRs
    (``bt.ind.ATR``) from the signal bar's close. Sweeps then score it in the compiled core
    (:mod:`mbats.research.brackets`, each RSI and ATR once per grid). The fields name the strategy
    parameters holding each value; the sweep's backtrader re-runs flag any trade that differs.
    """

    rsi_period: str = "rsi_period"
    oversold: str = "oversold"
    overbought: str = "overbought"
    atr_period: str = "atr_period"
    stop_atr: str = "stop_atr"
    target_atr: str = "target_atr"
    allow_short: str = "allow_short"
