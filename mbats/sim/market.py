"""Replayed prices: bar series, the replay clock, quotes and candles of any coarser granularity.

Time model: the clock ``now`` says how far the replay has got. A bar is *complete* once
``open + length <= now``. The bar containing ``now`` has only just opened: it shows as an
incomplete candle with open = high = low = close = its open, and its open is the current price.
Between bars (weekends) the price is the last close. Bid/ask are mid ∓ half the spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mbats.errors import MbatsError
from mbats.marketdata.calendar import NEW_YORK
from mbats.secmaster import Instrument
from mbats.secmaster.granularity import GRANULARITIES

NS = 1_000_000_000
DAY_OPEN_HOUR = 17  # OANDA's default dailyAlignment, New York time


def fmt_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, as OANDA writes times."""
    return f"{np.datetime_as_string(np.int64(ns).view('datetime64[ns]'), unit='ns')}Z"


def parse_time(value: str) -> int:
    """RFC 3339 or UNIX seconds (OANDA accepts both) → ns since the epoch."""
    try:
        return int(round(float(value) * NS))
    except ValueError:
        pass
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def bucket_starts(times_ns: np.ndarray, granularity: str) -> np.ndarray:
    """Open time of the ``granularity`` candle each base bar falls in (ns)."""
    step = GRANULARITIES[granularity]
    if isinstance(step, pd.Timedelta) and step <= pd.Timedelta(hours=1):
        return times_ns - times_ns % step.value  # the UTC grid
    # H2 … M are aligned to the 17:00 New York trading day, like OANDA's defaults
    local = pd.DatetimeIndex(times_ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(NEW_YORK)
    shifted = local.tz_localize(None) - pd.Timedelta(hours=DAY_OPEN_HOUR)
    if granularity == "W":
        floored = (shifted - pd.to_timedelta((shifted.weekday + 1) % 7, unit="D")).normalize()  # Sunday
    elif granularity == "M":
        floored = shifted.to_period("M").to_timestamp()
    else:
        floored = shifted.floor(step)
    opens = (floored + pd.Timedelta(hours=DAY_OPEN_HOUR)).tz_localize(NEW_YORK, ambiguous="NaT", nonexistent="shift_forward")
    return opens.tz_convert("UTC").as_unit("ns").asi8


def bucket_ends(starts: np.ndarray, granularity: str) -> np.ndarray:
    """Close time of candles opening at ``starts`` (calendar weeks / months in New York time)."""
    step = GRANULARITIES[granularity]
    if isinstance(step, pd.Timedelta):
        return starts + step.value
    local = pd.DatetimeIndex(starts.view("datetime64[ns]")).tz_localize("UTC").tz_convert(NEW_YORK).tz_localize(None)
    ends = (local + step).tz_localize(NEW_YORK, ambiguous="NaT", nonexistent="shift_forward")
    return ends.tz_convert("UTC").as_unit("ns").asi8


def bucket_length(start_ns: int, granularity: str) -> int:
    return int(bucket_ends(np.array([start_ns], dtype="int64"), granularity)[0] - start_ns)


@dataclass
class Series:
    """One instrument's base bars as numpy columns (times are bar opens, ns)."""

    instrument: Instrument
    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    _agg: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_frame(cls, symbol: str, frame: pd.DataFrame) -> "Series":
        idx = pd.DatetimeIndex(frame.index).tz_convert("UTC").as_unit("ns")
        return cls(
            Instrument.fx(symbol, "oanda-sim"),
            idx.asi8.copy(),
            *(frame[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")),
            frame["volume"].to_numpy(dtype="int64") if "volume" in frame else np.zeros(len(frame), "int64"),
        )

    def aggregated(self, granularity: str) -> tuple[np.ndarray, ...]:
        """(starts, open, high, low, close, volume, first_index) of complete-data candles, cached."""
        if granularity not in self._agg:
            keys = bucket_starts(self.times, granularity)
            starts, first = np.unique(keys, return_index=True)
            last = np.append(first[1:], len(keys)) - 1
            self._agg[granularity] = (
                starts, self.open[first], np.maximum.reduceat(self.high, first),
                np.minimum.reduceat(self.low, first), self.close[last], np.add.reduceat(self.volume, first), first,
            )
        return self._agg[granularity]


class Market:
    """All replayed instruments on one base granularity, plus the clock ``now`` (ns)."""

    def __init__(self, bars: dict[str, pd.DataFrame], granularity: str = "M1", spread_pips: float | dict = 1.0):
        if not bars:
            raise MbatsError("the simulator needs bars for at least one instrument")
        step = GRANULARITIES[granularity]
        if not isinstance(step, pd.Timedelta):
            raise MbatsError(f"replay granularity must be S5 … D, not {granularity}")
        self.granularity = granularity
        self.step = step.value
        self.series = {s.upper(): Series.from_frame(s.upper(), df) for s, df in bars.items() if not df.empty}
        if not self.series:
            raise MbatsError("the simulator was given only empty bar series")
        self.spread_pips = spread_pips
        self.timeline = np.unique(np.concatenate([s.times for s in self.series.values()]))
        self.now = int(self.timeline[-1] + self.step)  # default: everything replayed

    # --- clock ----------------------------------------------------------------------------
    @property
    def start(self) -> int:
        return int(self.timeline[0])

    @property
    def end(self) -> int:
        return int(self.timeline[-1] + self.step)

    def next_bar_end(self, bars: int = 1) -> int:
        """Clock time after ``bars`` more base bars complete (capped at the end of the data)."""
        i = int(np.searchsorted(self.timeline + self.step, self.now, side="right"))
        j = min(i + max(bars, 1) - 1, len(self.timeline) - 1)
        return max(self.now, int(self.timeline[j] + self.step))

    def completed_between(self, old: int, new: int) -> list[tuple[int, str, int]]:
        """Bars completing in (old, new], as (open time, symbol, index), oldest first."""
        events = []
        for symbol, s in self.series.items():
            ends = s.times + self.step
            lo, hi = np.searchsorted(ends, old, side="right"), np.searchsorted(ends, new, side="right")
            events.extend((int(s.times[i]), symbol, int(i)) for i in range(lo, hi))
        events.sort()
        return events

    # --- prices ---------------------------------------------------------------------------
    def instrument(self, symbol: str) -> Series:
        try:
            return self.series[symbol.upper()]
        except KeyError:
            raise KeyError(symbol) from None

    def half_spread(self, symbol: str) -> float:
        pips = self.spread_pips.get(symbol, 1.0) if isinstance(self.spread_pips, dict) else self.spread_pips
        return pips * self.instrument(symbol).instrument.pip_size / 2

    def mid(self, symbol: str) -> tuple[float, int]:
        """(current mid price, time it was set) at ``now``."""
        s = self.instrument(symbol)
        i = int(np.searchsorted(s.times, self.now, side="right")) - 1  # last bar opened by now
        if i < 0:
            return float(s.open[0]), int(s.times[0])
        if self.now < s.times[i] + self.step:
            return float(s.open[i]), int(s.times[i])  # the bar in progress has just opened
        return float(s.close[i]), int(s.times[i] + self.step)

    def quote(self, symbol: str) -> tuple[float, float, int]:
        """(bid, ask, time) at ``now``."""
        m, t = self.mid(symbol)
        hs = self.half_spread(symbol)
        digits = self.instrument(symbol).instrument.display_precision or 5
        return round(m - hs, digits), round(m + hs, digits), t

    def rate(self, quote_ccy: str, home: str) -> float | None:
        """Mid price that turns ``quote_ccy`` amounts into ``home`` currency (None if unknown)."""
        if quote_ccy == home:
            return 1.0
        if f"{quote_ccy}_{home}" in self.series:
            return self.mid(f"{quote_ccy}_{home}")[0]
        if f"{home}_{quote_ccy}" in self.series:
            return 1.0 / self.mid(f"{home}_{quote_ccy}")[0]
        return None

    # --- candles --------------------------------------------------------------------------
    def candles(
        self,
        symbol: str,
        granularity: str,
        count: int | None,
        from_ns: int | None,
        to_ns: int | None,
        include_first: bool,
    ) -> list[tuple[int, float, float, float, float, int, bool]]:
        """(time, o, h, l, c, volume, complete) rows as OANDA would return them at ``now``."""
        s = self.instrument(symbol)
        starts, o, h, low, c, v, first = s.aggregated(granularity)
        ends = bucket_ends(starts, granularity)
        n_complete = int(np.searchsorted(ends, self.now, side="right"))  # whole span replayed
        partial = self._partial_candle(s, starts, first, n_complete)
        lo_bound, hi_bound = 0, n_complete + (1 if partial else 0)
        rows_t = starts[:n_complete]

        def at(i: int) -> int:
            return int(starts[i]) if i < n_complete else partial[0]

        all_t = rows_t if not partial else np.append(rows_t, partial[0])
        if from_ns is not None:
            i0 = int(np.searchsorted(all_t, from_ns, side="left"))
            if include_first and i0 > 0 and at(i0 - 1) < from_ns < at(i0 - 1) + bucket_length(at(i0 - 1), granularity):
                i0 -= 1  # the candle covering `from`
            if not include_first and i0 < hi_bound and at(i0) == from_ns:
                i0 += 1
            i1 = int(np.searchsorted(all_t, to_ns, side="left")) if to_ns is not None else min(hi_bound, i0 + count)
        elif to_ns is not None:
            i1 = int(np.searchsorted(all_t, to_ns, side="left"))
            i0 = max(lo_bound, i1 - count)
        else:
            i1 = hi_bound
            i0 = max(lo_bound, i1 - count)
        i1 = min(i1, hi_bound)
        rows = []
        for i in range(i0, i1):
            if i < n_complete:
                rows.append((int(starts[i]), o[i], h[i], low[i], c[i], int(v[i]), True))
            else:
                rows.append((*partial, False))
        return rows

    def _partial_candle(self, s: Series, starts, first, n_complete: int):
        """The candle still forming at ``now`` (from replayed base bars plus the bar just opened)."""
        if n_complete >= len(starts) or starts[n_complete] > self.now:
            return None
        lo = int(first[n_complete])
        hi = int(np.searchsorted(s.times, self.now, side="right"))  # base bars opened by now
        if hi <= lo:
            return None
        done = int(np.searchsorted(s.times + self.step, self.now, side="right"))
        highs = [*s.high[lo:done], s.open[hi - 1]]
        lows = [*s.low[lo:done], s.open[hi - 1]]
        last = s.close[done - 1] if done == hi else s.open[hi - 1]
        return (int(starts[n_complete]), float(s.open[lo]), float(max(highs)), float(min(lows)), float(last),
                int(s.volume[lo:done].sum()))
