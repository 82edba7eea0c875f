"""Moving-average crossover on the traded bars, taken only in the direction of the H4 trend."""

import pandas as pd

from mbats.kernel.indicators import crossover, hold_targets, sma
from mbats.kernel.signals import SignalStrategy
from mbats.kernel.timeframes import align, resample


class SmaTrendFilter(SignalStrategy):
    """SMA crossover entries (e.g. on H1 bars) filtered by the trend of 4-hour bars.

    * H4 trend: the close of the last *finished* H4 bar against the average of the last ``trend``
      H4 closes. An H4 bar counts from the first base bar starting after it (08:00-12:00 from the
      12:00 bar on), never earlier: see :mod:`mbats.kernel.timeframes`.
    * Long after the fast average crosses above the slow one while the H4 trend is up; short after
      a downward cross while it is down (if ``allow_short``); flat otherwise, including when the
      trend turns against the position.

    The signal is computed on a bar's close and the order fills at the next bar's open.
    """

    params = dict(
        fast=10,            # base bars in the fast average
        slow=30,            # base bars in the slow average
        trend=20,           # H4 bars in the trend average
        allow_short=True,   # take downward crosses in a downtrend (else stay flat)
    )
    timeframes = ("H4",)    # backtrader also gets an EUR_USD@H4 feed, aligned the same way
    param_bounds = {"fast": (1, 100_000), "slow": (1, 100_000), "trend": (1, 100_000)}

    @classmethod
    def signals(cls, bars: pd.DataFrame, fast: int = 10, slow: int = 30, trend: int = 20,
                allow_short: bool = True) -> pd.Series:
        """Target position after each bar: +1 long, -1 short, 0 flat."""
        h4 = resample(bars, "H4")                                   # finished H4 bars only
        h4_close = align(h4["close"], h4, bars.index)               # on each base bar, as known at its close
        h4_average = align(sma(h4["close"], trend), h4, bars.index)
        uptrend, downtrend = h4_close > h4_average, h4_close < h4_average  # False while either is unknown

        cross = hold_targets(crossover(sma(bars["close"], fast), sma(bars["close"], slow)))
        long = (cross > 0) & uptrend
        short = (cross < 0) & downtrend & allow_short
        return long.astype("int8") - short.astype("int8")
