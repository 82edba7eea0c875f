"""The FX trading week: Sunday 17:00 to Friday 17:00 America/New_York.

New York changes clocks at 02:00 on a Sunday, before the week opens, so every trading week is
exactly 120 hours long. Bars of a granularity that divides a day are laid out from the week's
open, which for S5 … H1 is also the plain UTC grid OANDA uses. Christmas Day and New Year's Day
(the New York trading day that ends at 17:00 on 25 December / 1 January) count as closed.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from mbats.errors import MbatsError
from mbats.secmaster.granularity import GRANULARITIES, check_granularity

NEW_YORK = "America/New_York"
WEEK_OPEN_HOUR = 17  # Sunday 17:00 New York
TRADING_WEEK = pd.Timedelta(hours=120)
HOLIDAYS = ((12, 25), (1, 1))  # (month, day) of New York trading days with no market


def step_of(granularity: str) -> pd.Timedelta:
    """Bar length for granularities that divide a trading day (S5 … D)."""
    step = GRANULARITIES[check_granularity(granularity)]
    if not isinstance(step, pd.Timedelta):
        raise MbatsError(f"granularity {granularity} has no fixed bar length; use S5 … D")
    return step


def _as_utc(t: datetime | pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def week_opens(start: datetime | pd.Timestamp, end: datetime | pd.Timestamp) -> list[pd.Timestamp]:
    """UTC open times of every trading week that overlaps [start, end)."""
    start, end = _as_utc(start), _as_utc(end)
    local = start.tz_convert(NEW_YORK)
    # the Sunday on or before `start` (New York date), at 17:00 local
    sunday = (local - pd.Timedelta(days=(local.weekday() + 1) % 7)).normalize()
    opens = []
    week = sunday
    while True:
        open_local = (week.tz_localize(None) + pd.Timedelta(hours=WEEK_OPEN_HOUR)).tz_localize(NEW_YORK)
        open_utc = open_local.tz_convert("UTC")
        if open_utc >= end:
            break
        if open_utc + TRADING_WEEK > start:
            opens.append(open_utc)
        week = (week.tz_localize(None) + pd.Timedelta(days=7)).tz_localize(NEW_YORK)
    return opens


def _holiday_mask(times: pd.DatetimeIndex) -> np.ndarray:
    """True for bars in a closed New York trading day (the day ends 17:00 on the holiday)."""
    trading_day = (times.tz_convert(NEW_YORK) + pd.Timedelta(hours=24 - WEEK_OPEN_HOUR))
    mask = np.zeros(len(times), dtype=bool)
    for month, day in HOLIDAYS:
        mask |= (trading_day.month == month) & (trading_day.day == day)
    return mask


def trading_bar_times(
    start: datetime | pd.Timestamp, end: datetime | pd.Timestamp, granularity: str, holidays: bool = True
) -> pd.DatetimeIndex:
    """Open times (UTC) of every bar the market should have in [start, end)."""
    step = step_of(granularity)
    start, end = _as_utc(start), _as_utc(end)
    per_week = int(TRADING_WEEK / step)
    offsets = np.arange(per_week, dtype="int64") * step.value
    chunks = [open_.value + offsets for open_ in week_opens(start, end)]
    if not chunks:
        return pd.DatetimeIndex([], tz="UTC", name="ts")
    values = np.concatenate(chunks)
    values = values[(values >= start.value) & (values < end.value)]
    times = pd.DatetimeIndex(values.view("datetime64[ns]"), name="ts").tz_localize("UTC")
    if holidays and len(times):
        times = times[~_holiday_mask(times)]
    return times


def is_trading_time(times: pd.DatetimeIndex) -> np.ndarray:
    """True where a time falls inside the trading week (and not on a holiday)."""
    local = times.tz_convert(NEW_YORK)
    # shift so the week runs Monday 00:00 → Saturday 00:00 in shifted local time
    shifted = local.tz_localize(None) + pd.Timedelta(hours=24 - WEEK_OPEN_HOUR)
    open_ = shifted.weekday < 5
    return np.asarray(open_) & ~_holiday_mask(times)
