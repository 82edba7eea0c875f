"""A backtrader data feed over numpy columns read from the security master.

Stock ``PandasData`` walks the DataFrame row by row through pandas; this feed converts the
columns to plain Python lists once and hands them to backtrader by index, so the feed costs a
fraction of the run. When backtrader preloads (its default), the whole columns are copied into
the line buffers at once instead of bar by bar. Fields go to their own lines in the right order
(the original MBATS scrambled open/high/low/close).
"""

from __future__ import annotations

from array import array

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.secmaster.granularity import backtrader_timeframe

_UNIX_EPOCH_ORDINAL = 719163.0  # bt.date2num(datetime(1970, 1, 1))


def to_bt_datenum(index: pd.DatetimeIndex) -> np.ndarray:
    """Backtrader's float day numbers for a UTC DatetimeIndex, computed in one vector step."""
    seconds = index.tz_convert("UTC").tz_localize(None).as_unit("us").asi8 / 1e6
    return seconds / 86400.0 + _UNIX_EPOCH_ORDINAL


def from_bt_datenum(values) -> pd.DatetimeIndex:
    """Inverse of :func:`to_bt_datenum`, rounded to the microsecond like ``bt.num2date``."""
    days = np.asarray(values, dtype="float64") - _UNIX_EPOCH_ORDINAL
    micros = np.round(days * 86400.0 * 1e6).astype("int64")
    return pd.DatetimeIndex(micros.view("datetime64[us]"), name="ts").tz_localize("UTC")


class BarsFeed(bt.feed.DataBase):
    """Feed backtrader from a bars DataFrame (UTC index; open, high, low, close, volume)."""

    params = (("bars", None),)

    def start(self) -> None:
        super().start()
        bars: pd.DataFrame = self.p.bars
        self._columns = (
            to_bt_datenum(bars.index).tolist(),
            bars["open"].tolist(),
            bars["high"].tolist(),
            bars["low"].tolist(),
            bars["close"].tolist(),
            bars["volume"].astype("float64").tolist(),
        )
        self._next = 0
        self._count = len(bars)
        # backtrader rebuilds the 'tick_' + alias names with getattr/setattr on every bar; they are fixed
        aliases = self.getlinealiases()
        self._ticks = tuple(("tick_" + alias, self.lines.lines[i]) for i, alias in enumerate(aliases)
                            if alias != "datetime")
        self._tick_first = "tick_" + aliases[0]  # the line backtrader's tick_last repeats
        self._no_ticks = dict.fromkeys([name for name, _ in self._ticks] + ["tick_last"])
        self._plain = None  # decided at the first advance, once backtrader has set the buffers' modes

    def preload(self) -> None:
        """Fill every line buffer in one step (what ``load()`` per bar would leave behind)."""
        if self._filters or self.lines.close.mode != bt.LineBuffer.UnBounded or self._tzinput:
            super().preload()  # resampling, exactbars or timezone input need the per-bar path
            return
        columns = (*self._columns, [0.0] * self._count)
        lines = (self.lines.datetime, self.lines.open, self.lines.high, self.lines.low, self.lines.close,
                 self.lines.volume, self.lines.openinterest)
        for line, values in zip(lines, columns):
            line.array.extend(array("d", values))
            line.idx += self._count
            line.lencount += self._count
        self._next = self._count
        self._last()
        self.home()

    # backtrader's per-bar feed methods (feed.py) for a feed of plain unbounded buffers, with the
    # same effects: runonce calls them once per bar, and the generic versions were ~12 % of a run
    def _tick_nullify(self) -> None:
        self.__dict__.update(self._no_ticks)

    def _tick_fill(self, force: bool = False) -> None:
        attrs = self.__dict__
        if force or attrs.get(self._tick_first) is None:
            for name, line in self._ticks:
                attrs[name] = line.array[line.idx]
            attrs["tick_last"] = attrs[self._tick_first]

    def _plain_lines(self) -> bool:
        if self._plain is None:
            self._plain = all(type(line) is bt.LineBuffer and line.mode == bt.LineBuffer.UnBounded
                              for line in self.lines.lines)
        return self._plain

    def advance_peek(self) -> float:
        first, clock = self.lines.lines[0], self.lines.datetime
        if first.lencount < len(first.array) - first.extension:  # len(self) < self.buflen()
            return clock.array[clock.idx + 1]
        return float("inf")

    def advance(self, size: int = 1, datamaster=None, ticks: bool = True) -> None:
        if datamaster is not None or not self._plain_lines():
            super().advance(size, datamaster, ticks)
            return
        if ticks:
            self._tick_nullify()
        for line in self.lines.lines:  # LineBuffer.advance; _idx: the idx property's unbounded branch
            line._idx += size
            line.lencount += size
        first = self.lines.lines[0]
        if ticks and first.lencount < len(first.array) - first.extension:
            self._tick_fill()

    def _load(self) -> bool:
        i = self._next
        if i >= self._count:
            return False
        dt, o, h, l, c, v = self._columns
        lines = self.lines
        lines.datetime[0] = dt[i]
        lines.open[0] = o[i]
        lines.high[0] = h[i]
        lines.low[0] = l[i]
        lines.close[0] = c[i]
        lines.volume[0] = v[i]
        lines.openinterest[0] = 0.0
        self._next = i + 1
        return True


def make_feed(symbol: str, granularity: str, bars: pd.DataFrame) -> BarsFeed:
    timeframe, compression = backtrader_timeframe(granularity)
    return BarsFeed(bars=bars, name=symbol, timeframe=timeframe, compression=compression)
