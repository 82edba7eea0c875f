"""Iterative rolling windows: each new bar updates the statistic in O(1) (amortised for max/min).

For strategies that need a trailing statistic every bar. Rebuilding the window (slicing a
DataFrame, ``np.mean`` over the last N values) costs O(N) per bar plus pandas overhead; these keep
a ring buffer and running sums instead. Results equal ``pandas.Series.rolling(N)`` (NaN until the
window is full); sums are compensated (Neumaier) so they do not drift over millions of updates.
"""

from __future__ import annotations

import math
from collections import deque


class RollingSum:
    """Sum of the last ``period`` values, updated in O(1)."""

    def __init__(self, period: int):
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self._ring = [0.0] * period
        self._count = 0
        self._sum = 0.0
        self._comp = 0.0  # Neumaier compensation: the low-order bits the running sum lost

    def _add(self, x: float) -> None:
        t = self._sum + x
        if abs(self._sum) >= abs(x):
            self._comp += (self._sum - t) + x
        else:
            self._comp += (x - t) + self._sum
        self._sum = t

    def update(self, x: float) -> float:
        """Add the newest value (dropping the oldest once full); return the window's sum (NaN until full)."""
        slot = self._count % self.period
        if self._count >= self.period:
            self._add(-self._ring[slot])
        self._ring[slot] = x
        self._add(x)
        self._count += 1
        return self.value

    @property
    def full(self) -> bool:
        return self._count >= self.period

    @property
    def value(self) -> float:
        return self._sum + self._comp if self.full else math.nan


class RollingMean(RollingSum):
    """Mean of the last ``period`` values (``Series.rolling(period).mean()``), O(1) per update."""

    @property
    def value(self) -> float:
        return (self._sum + self._comp) / self.period if self.full else math.nan


class RollingStd:
    """Standard deviation (``ddof=1``) of the last ``period`` values: Welford add/remove updates.

    Running sums of x and x² cancel catastrophically for prices (variance ~1e-9 of x²); updating
    the mean and the sum of squared deviations directly, as pandas does, stays accurate.
    """

    def __init__(self, period: int, ddof: int = 1):
        if period <= ddof:
            raise ValueError("period must exceed ddof")
        self.period, self.ddof = period, ddof
        self._ring = [0.0] * period
        self._count = 0
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0

    def update(self, x: float) -> float:
        slot = self._count % self.period
        if self._count >= self.period:  # remove the oldest value
            old = self._ring[slot]
            self._n -= 1
            delta = old - self._mean
            self._mean -= delta / self._n
            self._m2 -= delta * (old - self._mean)
        self._ring[slot] = x
        self._n += 1
        delta = x - self._mean
        self._mean += delta / self._n
        self._m2 += delta * (x - self._mean)
        self._count += 1
        return self.value

    @property
    def value(self) -> float:
        if self._count < self.period:
            return math.nan
        var = self._m2 / (self.period - self.ddof)
        return math.sqrt(var) if var > 0.0 else 0.0


class RollingMax:
    """Maximum of the last ``period`` values with a monotonic deque (amortised O(1))."""

    _better = staticmethod(lambda a, b: a >= b)

    def __init__(self, period: int):
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self._window: deque[tuple[int, float]] = deque()
        self._count = 0

    def update(self, x: float) -> float:
        window, i = self._window, self._count
        while window and self._better(x, window[-1][1]):
            window.pop()
        window.append((i, x))
        if window[0][0] <= i - self.period:
            window.popleft()
        self._count += 1
        return self.value

    @property
    def value(self) -> float:
        return self._window[0][1] if self._count >= self.period else math.nan


class RollingMin(RollingMax):
    """Minimum of the last ``period`` values (amortised O(1))."""

    _better = staticmethod(lambda a, b: a <= b)
