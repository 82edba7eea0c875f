"""Bars for the simulator to replay: from the security master, a CSV file, or a seeded random walk."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from mbats.errors import DataValidationError
from mbats.marketdata.calendar import step_of, trading_bar_times
from mbats.secmaster import Instrument
from mbats.secmaster.validate import read_bar_file, validate_bars

START_PRICES = {"EUR_USD": 1.10, "GBP_USD": 1.27, "USD_JPY": 150.0, "AUD_USD": 0.66, "USD_CHF": 0.88,
                "USD_CAD": 1.36, "EUR_GBP": 0.86, "EUR_JPY": 162.0, "NZD_USD": 0.61}


def precision_of(symbol: str) -> int:
    return Instrument.fx(symbol, "sim").display_precision or 5


def synthetic_bars(
    symbol: str,
    start: datetime | str | pd.Timestamp,
    end: datetime | str | pd.Timestamp,
    granularity: str = "M1",
    seed: int = 7,
) -> pd.DataFrame:
    """A reproducible random walk on the trading-week grid (no weekend bars), prices rounded."""
    times = trading_bar_times(start, end, granularity)
    n = len(times)
    rng = np.random.default_rng([seed, sum(map(ord, symbol))])
    minutes = step_of(granularity).total_seconds() / 60
    sigma = 0.00012 * np.sqrt(minutes)  # roughly EUR/USD's one-minute volatility, scaled
    first = START_PRICES.get(symbol.upper(), 1.0)
    closes = first * np.exp(np.cumsum(rng.normal(0, sigma, n)))
    opens = np.concatenate([[first], closes[:-1]])
    wiggle = np.abs(rng.normal(0, sigma * 0.6, (2, n))) * first
    digits = precision_of(symbol)
    o, c = np.round(opens, digits), np.round(closes, digits)
    h = np.maximum(np.round(np.maximum(opens, closes) + wiggle[0], digits), np.maximum(o, c))
    low = np.minimum(np.round(np.minimum(opens, closes) - wiggle[1], digits), np.minimum(o, c))
    volume = rng.integers(1, 200, n)
    return pd.DataFrame({"open": o, "high": h, "low": low, "close": c, "volume": volume}, index=times)


def csv_bars(path: Path, assume_timezone: str = "UTC") -> pd.DataFrame:
    """Bars from a CSV/Parquet file (time, open, high, low, close[, volume]); naive times are UTC."""
    frame = validate_bars(read_bar_file(path), str(path), assume_timezone=assume_timezone)
    return frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))


def secmaster_bars(symbols: list[str], granularity: str, start=None, end=None) -> dict[str, pd.DataFrame]:
    from mbats.db import connect
    from mbats.secmaster import read_bars

    conn = connect("secmaster")
    try:
        out = {s: read_bars(conn, s, granularity, start, end) for s in symbols}
    finally:
        conn.close()
    empty = [s for s, df in out.items() if df.empty]
    if empty:
        raise DataValidationError(
            f"no {granularity} bars in the security master for {', '.join(empty)}; "
            "download or import some first (`mbats data download` / `mbats data import`)"
        )
    return out


SOURCES = ("synthetic", "secmaster", "csv")


def replay_bars(source: str, symbols: list[str], granularity: str, start: datetime | None = None,
                end: datetime | None = None, files: list[Path] | None = None,
                seed: int = 7) -> dict[str, pd.DataFrame]:
    """The bars a simulator replays, per symbol, from one of :data:`SOURCES`.

    synthetic: a seeded random walk from ``start`` (default one year before ``end``) to ``end``
    (default now); secmaster: the stored bars in the window; csv: one file per symbol, same order.
    """
    from mbats.errors import UsageError

    if source == "synthetic":
        end_ts = pd.Timestamp(end) if end is not None else pd.Timestamp.now(tz="UTC").floor("min")
        start_ts = pd.Timestamp(start) if start is not None else end_ts - pd.Timedelta(days=365)
        return {s: synthetic_bars(s, start_ts, end_ts, granularity, seed) for s in symbols}
    if source == "secmaster":
        return secmaster_bars(symbols, granularity, start, end)
    if source == "csv":
        if not files or len(files) != len(symbols):
            raise UsageError("--source csv needs one --csv file per --instrument, in the same order")
        return {s: csv_bars(p) for s, p in zip(symbols, files)}
    raise UsageError(f"--source: '{source}' is not {', '.join(SOURCES[:-1])} or {SOURCES[-1]}")
