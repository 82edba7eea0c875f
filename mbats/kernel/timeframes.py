"""Higher timeframes built from a strategy's base bars, visible only once they have closed.

A strategy may look at coarser bars than the ones it trades (an H4 trend filter on H1 entries).
Both engines get them from the same two functions, so they see the same values at every bar:

* :func:`resample` turns the base bars into higher-timeframe bars: buckets of the target length
  aligned on UTC midnight (00:00, 04:00, 08:00 … for H4), open of the first base bar, high/low
  over the bucket, close of the last, volume summed. Each bucket records ``visible_ts``: the
  **first base bar that starts at or after the bucket's end**. So the H4 bar 08:00-12:00 is first
  seen by the decision taken on the H1 bar that starts at 12:00 (at its close, 13:00), never at
  08:00-11:00. A bucket whose last base bars are missing (a gap, the weekend) becomes visible at
  the next bar after its end; a bucket still open when the history ends is never visible; the
  bucket a history starts in may be partial (so is the one after the weekend open).

  Why the bar that *starts* at the end rather than the one that *closes* there (11:00-12:00,
  freqtrade's rule, one base bar earlier): that needs the base bar's length, which ``signals(bars)``
  cannot know for sure (a history of one bar, or two either side of a weekend), and a guess that
  differs between a full and a cut history would itself be look-ahead. This rule needs only the
  stamps, costs one base bar of delay, and is the same in every engine and in live trading.
* :func:`align` forward-fills a higher-timeframe series onto the base bars from ``visible_ts``;
  :func:`higher_timeframe` does both for the OHLCV columns.

Why resample rather than read the stored granularity: the stored H4 candles of a vendor need not
line up with the base bars (OANDA aligns H4 and D on 17:00 New York, which moves with daylight
saving), may be missing or come from another load; bars resampled from exactly the base bars of
the run are always consistent with them, and cutting the history (the look-ahead check) cuts the
higher timeframe with it. Only fixed-length granularities from S5 to D are supported (W and M
are calendar periods); a backtest refuses one that is not a whole multiple of its granularity.

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


def check_higher(base_granularity: str, granularity: str) -> pd.Timedelta:
    """``granularity``'s length, refused unless it is a whole multiple (> 1) of the base granularity's."""
    base, target = timeframe_length(base_granularity), timeframe_length(granularity)
    if target <= base or target % base != pd.Timedelta(0):
        raise MbatsError(f"higher timeframe {granularity} is not a whole multiple (> 1) of the base bars "
                         f"({base_granularity})")
    return target


def timeframe_length(granularity: str) -> pd.Timedelta:
    step = GRANULARITIES[check_granularity(granularity)]
    if not isinstance(step, pd.Timedelta):
        raise MbatsError(f"higher timeframe {granularity}: only fixed-length granularities (S5 … D) can be "
                         "resampled, not calendar weeks or months")
    return step


def resample(bars: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Higher-timeframe OHLCV bars of ``bars``, indexed by bucket start, with ``visible_ts``.

    Only buckets that some later base bar shows are kept (``visible_ts`` is a stamp of ``bars``):
    the last, unfinished bucket of a history is left out.
    """
    target = timeframe_length(granularity)
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
    }, index=pd.DatetimeIndex(starts, tz="UTC", name="ts").as_unit(bars.index.unit))
    at = np.searchsorted(ts.asi8, starts + target.value, side="left")  # first bar starting at/after the end
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


def higher_timeframe(bars: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """The higher timeframe's open/high/low/close/volume on every base bar, as its decision may see them."""
    higher = resample(bars, granularity)
    return align(higher[list(OHLCV)], higher, bars.index)


def feed_bars(bars: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Higher-timeframe bars stamped with the base bar at which each becomes visible (a backtrader feed)."""
    higher = resample(bars, granularity)
    frame = higher[list(OHLCV)].set_axis(pd.DatetimeIndex(higher["visible_ts"], name="ts"), axis=0)
    return frame[~frame.index.duplicated(keep="last")]
