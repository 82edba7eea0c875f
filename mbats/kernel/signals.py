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
    # backtrader's float day numbers are exact to ~10 us only: to the millisecond, bars stamped on whole
    # seconds get their stamps back exactly (higher timeframes bucket on them, mbats.kernel.timeframes)
    index = pd.to_datetime((stamps - 719163.0) * 86400.0, unit="s", utc=True).round("ms")
    columns = {name: np.asarray(getattr(data, name).array[:count], dtype=np.float64)
               for name in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame(columns, index=index.rename("ts"))


def base_datas(strategy: bt.Strategy) -> list[bt.AbstractDataBase]:
    """The feeds a strategy trades: all but the higher-timeframe feeds named ``SYMBOL@GRANULARITY``."""
    return [data for data in strategy.datas if "@" not in (data._name or "")]


def higher_data(strategy: bt.Strategy, data: bt.AbstractDataBase, granularity: str) -> bt.AbstractDataBase:
    """The ``granularity`` feed of ``data``'s instrument (declared in the strategy's ``timeframes``)."""
    return strategy.getdatabyname(f"{data._name}@{granularity}")


def signal_params(strategy: bt.Strategy) -> dict[str, object]:
    return {name: getattr(strategy.p, name) for name in strategy.params._getkeys()}


class SignalStrategy(bt.Strategy):
    """Trade to the target position computed by ``signals``: reverse, close or open at the next open."""

    @classmethod
    def signals(cls, bars: pd.DataFrame, **params) -> pd.Series:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> None:
        params = signal_params(self)
        # only the traded feeds: the extra higher-timeframe feeds (``timeframes``) are for reading,
        # and signals() builds its higher timeframes from the base bars by the same rule
        self._targets = {data: np.asarray(self.signals(preloaded_bars(data), **params), dtype=np.int8).tolist()
                         for data in base_datas(self)}

    def prenext(self) -> None:
        # a higher-timeframe feed has no bar until its first bar closes; the base feeds trade regardless,
        # as the vectorised engine does
        if all(len(data) for data in self._targets):
            self.next()

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


def has_brackets(cls: type[bt.Strategy]) -> bool:
    """A strategy (not a SignalStrategy) whose entries and brackets the compiled sweep core can score."""
    from mbats.kernel.indicators import RsiAtrBrackets

    return isinstance(cls, type) and isinstance(getattr(cls, "compiled_signals", None), RsiAtrBrackets)
