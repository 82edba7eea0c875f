"""Moving-average crossover: long when the fast average crosses above the slow one, short below."""

import pandas as pd

from mbats.kernel.indicators import SmaCross, crossover, hold_targets, sma
from mbats.kernel.signals import SignalStrategy


class SmaCrossover(SignalStrategy):
    """Trend following on two simple moving averages of the close.

    The signal is computed on a bar's close and the order fills at the next bar's open.
    ``signals`` is the whole strategy: backtrader trades its targets bar by bar and sweeps
    score it vectorised, so both see the same crosses.
    """

    params = dict(
        fast=10,            # bars in the fast average
        slow=30,            # bars in the slow average
        allow_short=True,   # reverse into a short on a downward cross (else just go flat)
    )
    # sweeps score these signals in the compiled core (mbats.research.core), SMAs once per grid
    compiled_signals = SmaCross(fast="fast", slow="slow", allow_short="allow_short")
    param_bounds = {"fast": (1, 100_000), "slow": (1, 100_000)}  # checked before any run starts

    @classmethod
    def signals(cls, bars: pd.DataFrame, fast: int = 10, slow: int = 30, allow_short: bool = True) -> pd.Series:
        """Target position after each bar: +1 from an up-cross, -1 (or flat) from a down-cross."""
        cross = crossover(sma(bars["close"], fast), sma(bars["close"], slow))
        return hold_targets(cross, allow_short)
