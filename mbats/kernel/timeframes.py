"""Higher timeframes built from a strategy's base bars, visible only once they have closed.

A strategy may look at coarser bars than the ones it trades (an H4 trend filter on H1 entries).
Both engines get them from the same two functions, so they see the same values at every bar:

* :func:`resample` turns the base bars into higher-timeframe bars: buckets of the target length
  aligned on UTC midnight (00:00, 04:00, 08:00 … for H4), open of the first base bar, high/low
  over the bucket, close of the last, volume summed. Each bucket records ``visible_ts``: the
  **first base bar whose close is at or after the bucket's end**. Decisions are taken on a bar's
  close and filled at the next open, so the H4 bar 08:00–12:00 is first seen at the close of the
  H1 bar 11:00–12:00 (the same instant it closes; freqtrade's informative-pair rule) and never at
  08:00, 09:00 or 10:00. A bucket whose last base bars are missing becomes visible at the next bar
  after its end; a bucket still open when the history ends is never visible.
* :func:`align` forward-fills a higher-timeframe series onto the base bars from ``visible_ts``;
  :func:`higher_timeframe` does both for the OHLCV columns.

Why resample rather than read the stored granularity: the stored H4 candles of a vendor need not
line up with the base bars (OANDA aligns H4 and D on 17:00 New York, which moves with daylight
saving), may be missing or come from another load; bars resampled from exactly the base bars of
the run are always consistent with them, and cutting the history (the look-ahead check) cuts the
higher timeframe with it. Only fixed-length granularities from S5 to D that are a whole multiple
of the base bar are supported (W and M are calendar periods).

In backtrader, :func:`mbats.backtest.runner.simulate` adds one extra feed per instrument and
declared timeframe (``timeframes = ("H4",)`` on the strategy), named ``EUR_USD@H4``, whose bars
are stamped with ``visible_ts``: backtrader delivers each H4 bar together with the base bar at
which it becomes visible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mbats.errors import MbatsError
from mbats.secmaster.granularity import GRANULARITIES, check_granularity

OHLCV = ("open", "high", "low", "close", "volume")


def feed_name(symbol: str, granularity: str) -> str:
    """Name of the extra backtrader feed holding ``symbol``'s bars of ``granularity``."""
    return f"{symbol}@{granularity}"


def declared_timeframes(cls: type) -> tuple[str, ...]:
    """The extra granularities a strategy class declares (``timeframes = ("H4",)``), checked."""
    declared = getattr(cls, "timeframes", ()) or ()
    if isinstance(declared, str):
        declared = (declared,)
    for granularity in declared:
        timeframe_length(granularity)
    return tuple(declared)


def timeframe_length(granularity: str) -> pd.Timedelta:
    step = GRANULARITIES[check_granularity(granularity)]
    if not isinstance(step, pd.Timedelta):
        raise MbatsError(f"higher timeframe {granularity}: only fixed-length granularities (S5 … D) can be "
                         "resampled, not calendar weeks or months")
    return step


def base_length(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The base bar's length: the shortest step between consecutive bars (gaps are longer)."""
    if len(index) < 2:
        raise MbatsError("a higher timeframe needs at least 2 base bars to know the base bar's length")
    return pd.Timedelta(int(np.diff(index.as_unit("ns").round("ms").asi8).min()), unit="ns")


def check_multiple(base: pd.Timedelta, granularity: str) -> pd.Timedelta:
    target = timeframe_length(granularity)
    if target <= base or target % base != pd.Timedelta(0):
        raise MbatsError(f"higher timeframe {granularity} is not a whole multiple (> 1) of the base bars "
                         f"({base})")
    return target


def resample(bars: pd.DataFrame, granularity: str, base: pd.Timedelta | None = None) -> pd.DataFrame:
    """Higher-timeframe OHLCV bars of ``bars``, indexed by bucket start, with ``visible_ts``.

    Only buckets that some base bar closes at or after are kept (``visible_ts`` is then a base bar
    of ``bars``): the last, unfinished bucket of a history is left out.
    """
    base = base if base is not None else base_length(bars.index)
    target = check_multiple(base, granularity)
    ts = bars.index.as_unit("ns").round("ms")      # float stamps from backtrader are off by microseconds
    bucket = ts.floor(target)                       # floor is aligned on the Unix epoch: UTC midnight
    starts, first = np.unique(bucket.asi8, return_index=True)
    last = np.r_[first[1:], len(ts)] - 1
    frame = pd.DataFrame({
        "open": bars["open"].to_numpy(np.float64)[first],
        "high": np.maximum.reduceat(bars["high"].to_numpy(np.float64), first),
        "low": np.minimum.reduceat(bars["low"].to_numpy(np.float64), first),
        "close": bars["close"].to_numpy(np.float64)[last],
        "volume": np.add.reduceat(bars["volume"].to_numpy(np.float64), first),
    }, index=pd.DatetimeIndex(starts, tz="UTC", name="ts").as_unit(ts.unit))
    # first base bar closing at/after the bucket's end: close = ts + base >= end  <=>  ts >= end - base
    ends = starts + target.value
    at = np.searchsorted(ts.asi8, ends - base.value, side="left")
    keep = at < len(ts)
    frame = frame[keep]
    frame["visible_ts"] = bars.index[at[keep]]
    return frame


def align(values: pd.Series | pd.DataFrame, higher: pd.DataFrame, index: pd.DatetimeIndex) -> pd.Series | pd.DataFrame:
    """``values`` (indexed like ``higher``, from :func:`resample`) on the base ``index``.

    Each value appears from its bar's ``visible_ts`` and is carried forward; NaN before the first
    higher-timeframe bar has closed.
    """
    stamped = values.set_axis(pd.DatetimeIndex(higher["visible_ts"]), axis=0)
    # several buckets may become visible at the same base bar (after a weekend gap): the newest wins
    stamped = stamped[~stamped.index.duplicated(keep="last")]
    return stamped.reindex(index.union(stamped.index)).ffill().reindex(index)


def higher_timeframe(bars: pd.DataFrame, granularity: str, base: pd.Timedelta | None = None) -> pd.DataFrame:
    """The higher timeframe's open/high/low/close/volume on every base bar, as known at its close."""
    higher = resample(bars, granularity, base)
    return align(higher[list(OHLCV)], higher, bars.index)


def feed_bars(bars: pd.DataFrame, granularity: str, base: pd.Timedelta) -> pd.DataFrame:
    """Higher-timeframe bars stamped with the base bar at which each becomes visible (a backtrader feed)."""
    higher = resample(bars, granularity, base)
    frame = higher[list(OHLCV)].set_axis(pd.DatetimeIndex(higher["visible_ts"], name="ts"), axis=0)
    return frame[~frame.index.duplicated(keep="last")]
