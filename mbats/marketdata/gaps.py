"""Missing bars, measured against the FX trading week (see :mod:`mbats.marketdata.calendar`).

Weekends and the Christmas / New Year closures are never gaps. Quiet minutes with no ticks are
real gaps in OANDA data (OANDA sends no candle when nothing traded), so the report can ignore
short runs with ``min_missing``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from mbats.marketdata.calendar import step_of, trading_bar_times
from mbats.secmaster.bars import read_bars


@dataclass(frozen=True)
class Gap:
    start: pd.Timestamp  # open time of the first missing bar
    end: pd.Timestamp  # open time of the first bar after the gap
    missing_bars: int

    def as_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "missing_bars": self.missing_bars}


@dataclass
class GapReport:
    symbol: str
    granularity: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    expected_bars: int
    present_bars: int
    missing_bars: int
    gaps: list[Gap] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.present_bars / self.expected_bars if self.expected_bars else 1.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["start"] = self.start.isoformat() if self.start is not None else None
        out["end"] = self.end.isoformat() if self.end is not None else None
        out["coverage"] = round(self.coverage, 6)
        out["gaps"] = [g.as_dict() for g in self.gaps]
        return out


def find_gaps(
    present: pd.DatetimeIndex,
    granularity: str,
    start: datetime | pd.Timestamp,
    end: datetime | pd.Timestamp,
    min_missing: int = 1,
    symbol: str = "",
) -> GapReport:
    """Compare bar open times with the trading-week grid on [start, end)."""
    step = step_of(granularity)
    expected = trading_bar_times(start, end, granularity)
    exp = expected.asi8 if len(expected) else np.array([], dtype="int64")
    have = pd.DatetimeIndex(present).tz_convert("UTC").as_unit("ns").asi8 if len(present) else np.array([], "int64")
    in_grid = np.isin(exp, have, assume_unique=True)
    missing = exp[~in_grid]
    gaps: list[Gap] = []
    if missing.size:
        # a run breaks where consecutive missing bars are not one step apart (weekends included)
        breaks = np.flatnonzero(np.diff(missing) != step.value) + 1
        for run in np.split(missing, breaks):
            if run.size >= min_missing:
                gaps.append(Gap(pd.Timestamp(run[0], tz="UTC"), pd.Timestamp(run[-1] + step.value, tz="UTC"), int(run.size)))
    return GapReport(
        symbol=symbol,
        granularity=granularity,
        start=pd.Timestamp(start) if start is not None else None,
        end=pd.Timestamp(end) if end is not None else None,
        expected_bars=int(exp.size),
        present_bars=int(in_grid.sum()),
        missing_bars=int(missing.size),
        gaps=gaps,
    )


def gap_report(
    conn,
    symbol: str,
    granularity: str,
    start: datetime | None = None,
    end: datetime | None = None,
    min_missing: int = 1,
) -> GapReport:
    """Gaps of one stored series; the range defaults to its first bar … last bar."""
    step_of(granularity)  # fail early on W / M
    bars = read_bars(conn, symbol, granularity, start, end)
    if bars.empty:
        return GapReport(symbol, granularity, start and pd.Timestamp(start), end and pd.Timestamp(end), 0, 0, 0)
    start = pd.Timestamp(start) if start is not None else bars.index[0]
    end = pd.Timestamp(end) if end is not None else bars.index[-1] + step_of(granularity)
    return find_gaps(bars.index, granularity, start, end, min_missing, symbol)
