"""Signal strategies in a live session at a constant cost per bar.

A :class:`~mbats.kernel.signals.SignalStrategy` computes its targets once from preloaded bars in a
backtest. Live bars arrive one at a time, and running ``signals()`` over the whole history on
every bar makes each bar cost more than the one before. :func:`live_strategy` instead picks, per
strategy, the cheapest way that yields exactly the backtest's targets:

1. **Incremental** — the strategy declares compiled signals (``compiled_signals = SmaCross(...)``,
   the rule sweeps already compute natively): a :class:`SmaCrossStepper` carries the two moving
   averages, the last non-zero difference and the held target from bar to bar, O(slow period) per
   bar, with the same correctly rounded sums as :func:`mbats.kernel.indicators.sma`.
2. **Trailing window** — the strategy declares ``signal_lookback(**params) -> int``: the number of
   trailing bars its ``signals()`` needs for the newest target to equal the full-history one
   (a pure function of a bounded window, e.g. an RSI threshold). ``signals()`` runs on that window.
3. **Whole history** (fallback) — neither is declared: ``signals()`` runs on every bar so far, as
   before, and a warning says the per-bar cost grows with the session.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.errors import MbatsError
from mbats.kernel.indicators import SmaCross
from mbats.kernel.signals import has_signals, signal_params

log = logging.getLogger(__name__)
_EPOCH_ORDINAL = 719163.0  # backtrader's date number of 1970-01-01


class SmaCrossStepper:
    """``hold_targets(crossover(sma(close, fast), sma(close, slow)), allow_short)`` one close at a time."""

    def __init__(self, fast: int, slow: int, allow_short: bool) -> None:
        if fast < 1 or slow < 1:
            raise MbatsError(f"moving-average periods must be >= 1 (fast={fast}, slow={slow})")
        self.fast, self.slow, self.allow_short = int(fast), int(slow), bool(allow_short)
        self._closes: deque[float] = deque(maxlen=max(self.fast, self.slow))
        self._last_diff: float | None = None  # last non-zero fast - slow (seeded with the first, even 0)
        self._held = 0  # the last non-zero cross: +1 up, -1 down

    def _sma(self, period: int) -> float:
        if len(self._closes) < period:
            return math.nan
        window = list(self._closes)[-period:]
        return math.fsum(window) / period  # correctly rounded, as kernel.indicators.sma and bt.ind.SMA

    def push(self, close: float) -> int:
        """Add the newest close; → the target position after it (-1, 0, +1)."""
        if not math.isfinite(close):
            raise MbatsError(f"close {close!r} is not a finite price")
        self._closes.append(float(close))
        diff = self._sma(self.fast) - self._sma(self.slow)
        cross = 0
        if not math.isnan(diff):
            if self._last_diff is None:
                self._last_diff = diff
            else:
                if self._last_diff < 0.0 < diff:
                    cross = 1
                elif self._last_diff > 0.0 > diff:
                    cross = -1
                if diff != 0.0:
                    self._last_diff = diff
        if cross:
            self._held = cross
        return self._held if self.allow_short else max(self._held, 0)


class _Latest:
    """What a SignalStrategy's ``next`` reads as ``targets[len(data) - 1]``: only the newest bar exists."""

    __slots__ = ("index", "value")

    def __init__(self) -> None:
        self.index, self.value = -1, 0

    def __getitem__(self, i: int) -> int:
        if i != self.index:
            raise MbatsError(f"live signals hold only the newest target (bar {self.index}), not bar {i}")
        return self.value


def _window(data: bt.AbstractDataBase, size: int) -> pd.DataFrame:
    """The last ``size`` bars of a live feed as the frame ``signals()`` takes (UTC index)."""
    size = min(size, len(data))
    stamps = np.asarray(data.datetime.get(size=size), dtype=np.float64)
    index = pd.to_datetime((stamps - _EPOCH_ORDINAL) * 86400.0, unit="s", utc=True).round("us")
    columns = {name: np.asarray(getattr(data, name).get(size=size), dtype=np.float64)
               for name in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame(columns, index=index.rename("ts"))


def signal_mode(cls: type[bt.Strategy], params: dict) -> str:
    """``incremental``, ``window`` or ``history``: how :func:`live_strategy` computes ``cls``'s targets."""
    if isinstance(getattr(cls, "compiled_signals", None), SmaCross):
        return "incremental"
    if callable(getattr(cls, "signal_lookback", None)) and cls.signal_lookback(**params) is not None:
        return "window"
    return "history"


def _updater(strategy: bt.Strategy, mode: str, params: dict) -> Callable[[bt.AbstractDataBase, int], int]:
    """A function (data, bars not yet seen) → the target after the data's newest bar."""
    cls = type(strategy)
    if mode == "incremental":
        decl: SmaCross = cls.compiled_signals
        steppers = {data: SmaCrossStepper(params[decl.fast], params[decl.slow], params[decl.allow_short])
                    for data in strategy.datas}

        def step(data: bt.AbstractDataBase, new: int) -> int:
            stepper, target = steppers[data], 0
            for ago in range(new - 1, -1, -1):  # normally one bar; more if bars came before next() ran
                target = stepper.push(data.close[-ago])
            return target

        return step
    lookback = int(cls.signal_lookback(**params)) if mode == "window" else None
    if lookback is not None and lookback < 1:
        raise MbatsError(f"{cls.__name__}.signal_lookback returned {lookback}; it must be >= 1 bar")

    def recompute(data: bt.AbstractDataBase, new: int) -> int:
        bars = _window(data, lookback if lookback is not None else len(data))
        return int(np.asarray(cls.signals(bars, **params), dtype=np.int8)[-1])

    return recompute


def live_strategy(cls: type[bt.Strategy]) -> type[bt.Strategy]:
    """The class itself, except signal strategies: they get their targets bar by bar (see the module)."""
    if not has_signals(cls):
        return cls

    def start(self) -> None:
        params = signal_params(self)
        self._signal_mode = signal_mode(cls, params)
        if self._signal_mode == "history":
            log.warning("%s declares neither compiled signals nor signal_lookback(): signals() runs over the whole "
                        "history on every bar, so each bar costs more than the last", cls.__name__)
        self._update = _updater(self, self._signal_mode, params)
        self._targets = {data: _Latest() for data in self.datas}
        self._seen = {data: 0 for data in self.datas}

    def next(self) -> None:
        for data, latest in self._targets.items():
            new = len(data) - self._seen[data]
            if new > 0:
                latest.value = self._update(data, new)
                latest.index = len(data) - 1
                self._seen[data] = len(data)
        cls.next(self)

    return type(cls.__name__, (cls,), {"start": start, "next": next, "__module__": cls.__module__})
