"""OANDA granularity codes and what they mean for pandas and backtrader."""

from __future__ import annotations

import pandas as pd

from mbats.errors import MbatsError

# code -> length of one bar (calendar months and weeks are handled by pandas offsets)
GRANULARITIES: dict[str, pd.DateOffset | pd.Timedelta] = {
    "S5": pd.Timedelta(seconds=5), "S10": pd.Timedelta(seconds=10), "S15": pd.Timedelta(seconds=15),
    "S30": pd.Timedelta(seconds=30), "M1": pd.Timedelta(minutes=1), "M2": pd.Timedelta(minutes=2),
    "M4": pd.Timedelta(minutes=4), "M5": pd.Timedelta(minutes=5), "M10": pd.Timedelta(minutes=10),
    "M15": pd.Timedelta(minutes=15), "M30": pd.Timedelta(minutes=30), "H1": pd.Timedelta(hours=1),
    "H2": pd.Timedelta(hours=2), "H3": pd.Timedelta(hours=3), "H4": pd.Timedelta(hours=4),
    "H6": pd.Timedelta(hours=6), "H8": pd.Timedelta(hours=8), "H12": pd.Timedelta(hours=12),
    "D": pd.Timedelta(days=1), "W": pd.DateOffset(weeks=1), "M": pd.DateOffset(months=1),
}


def check_granularity(code: str) -> str:
    if code not in GRANULARITIES:
        raise MbatsError(f"unknown granularity '{code}'; use one of {', '.join(GRANULARITIES)}")
    return code


def bar_length(code: str) -> pd.Timedelta:
    step = GRANULARITIES[check_granularity(code)]
    if isinstance(step, pd.Timedelta):
        return step
    return pd.Timedelta(days=7) if code == "W" else pd.Timedelta(days=30)


def backtrader_timeframe(code: str) -> tuple[int, int]:
    """(bt.TimeFrame, compression) for a granularity, so analyzers annualise correctly."""
    import backtrader as bt

    check_granularity(code)
    if code.startswith("S"):
        return bt.TimeFrame.Seconds, int(code[1:])
    if code.startswith("M") and code != "M":
        return bt.TimeFrame.Minutes, int(code[1:])
    if code.startswith("H"):
        return bt.TimeFrame.Minutes, 60 * int(code[1:])
    return {"D": (bt.TimeFrame.Days, 1), "W": (bt.TimeFrame.Weeks, 1), "M": (bt.TimeFrame.Months, 1)}[code]
