"""Strategies that declare their signals once, vectorised, and trade them in backtrader.

A :class:`SignalStrategy` subclass writes one classmethod, ``signals(bars, **params)``, returning
the target position after each bar's close (-1 short, 0 flat, +1 long). Backtrader computes the
targets once at start-up from the preloaded bars and ``next()`` only reads them, so the event
loop does no indicator work, and the vectorised simulator in :mod:`mbats.research.vectorised`
trades exactly the same series.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.errors import MbatsError


def preloaded_bars(data: bt.AbstractDataBase) -> pd.DataFrame:
    """All of a preloaded feed's bars as a DataFrame (UTC index; open, high, low, close, volume)."""
    count = data.buflen()
    if count <= 0 or len(data.close.array) < count:
        raise MbatsError(f"feed {data._name}: signal strategies need preloaded data (Cerebro(preload=True))")
    stamps = np.asarray(data.datetime.array[:count], dtype=np.float64)
    index = pd.to_datetime((stamps - 719163.0) * 86400.0, unit="s", utc=True).round("us")
    columns = {name: np.asarray(getattr(data, name).array[:count], dtype=np.float64)
               for name in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame(columns, index=index.rename("ts"))


def signal_params(strategy: bt.Strategy) -> dict[str, object]:
    return {name: getattr(strategy.p, name) for name in strategy.params._getkeys()}


class SignalStrategy(bt.Strategy):
    """Trade to the target position computed by ``signals``: reverse, close or open at the next open."""

    @classmethod
    def signals(cls, bars: pd.DataFrame, **params) -> pd.Series:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> None:
        params = signal_params(self)
        self._targets = {data: np.asarray(self.signals(preloaded_bars(data), **params), dtype=np.int8).tolist()
                         for data in self.datas}

    def next(self) -> None:
        for data, targets in self._targets.items():
            target = targets[len(data) - 1]
            position = self.getposition(data).size
            if target > 0 and position <= 0:
                if position < 0:
                    self.close(data)
                self.buy(data)
            elif target < 0 and position >= 0:
                if position > 0:
                    self.close(data)
                self.sell(data)
            elif target == 0 and position != 0:
                self.close(data)


def has_signals(cls: type[bt.Strategy]) -> bool:
    return isinstance(cls, type) and issubclass(cls, SignalStrategy)
