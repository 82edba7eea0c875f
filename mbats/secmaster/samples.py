"""Sample data so the platform works with no account and no internet.

* Real EUR/USD hourly bars (5,000, 2017–2018) shipped inside the ``backtesting`` PyPI package.
* Synthetic 1-minute bars for a few USD-quoted pairs: a seeded random walk laid on the FX
  trading week, so reloading produces the same bars. They are marked ``is_synthetic`` with the
  generator and seed recorded as their source.
"""

from __future__ import annotations

from importlib import metadata, resources

import numpy as np
import pandas as pd

from mbats.marketdata.calendar import trading_bar_times
from mbats.secmaster.ingest import LoadResult, load_frames
from mbats.secmaster.instruments import Instrument

SYNTHETIC_VENDOR = "mbats-synthetic"
SYNTHETIC_PAIRS = {"GBP_USD": 1.27, "AUD_USD": 0.67, "NZD_USD": 0.61}
SYNTHETIC_START, SYNTHETIC_END = "2024-01-01", "2024-02-01"
ANNUAL_VOL = 0.08


def eurusd_hourly() -> tuple[Instrument, pd.DataFrame]:
    path = resources.files("backtesting") / "test" / "EURUSD.csv"
    version = metadata.version("backtesting")
    frame = pd.read_csv(path)
    instrument = Instrument.fx("EUR_USD", vendor="backtesting.py sample data",
                               source=f"PyPI backtesting {version}: backtesting/test/EURUSD.csv")
    return instrument, frame


def synthetic_minutes(symbol: str, start_price: float, start: str = SYNTHETIC_START, end: str = SYNTHETIC_END,
                      seed: int | None = None) -> tuple[Instrument, pd.DataFrame]:
    """Seeded geometric random walk sampled every 10 s; each minute's OHLC comes from its 6 ticks."""
    seed = seed if seed is not None else sum(map(ord, symbol))
    times = trading_bar_times(start, end, "M1")
    rng = np.random.default_rng(seed)
    ticks_per_bar = 6
    sigma = ANNUAL_VOL / np.sqrt(260 * 24 * 60 * ticks_per_bar)
    steps = rng.normal(0.0, sigma, size=len(times) * ticks_per_bar)
    path = start_price * np.exp(np.cumsum(steps)).reshape(len(times), ticks_per_bar)
    decimals = 5
    frame = pd.DataFrame({
        "ts": times,
        "open": path[:, 0].round(decimals),
        "high": path.max(axis=1).round(decimals),
        "low": path.min(axis=1).round(decimals),
        "close": path[:, -1].round(decimals),
        "volume": rng.integers(20, 400, size=len(times)),
    })
    instrument = Instrument.fx(symbol, vendor=SYNTHETIC_VENDOR, is_synthetic=True,
                               source=f"generated: geometric random walk, {ANNUAL_VOL:.0%} annual vol, seed {seed}")
    return instrument, frame


def load_samples(conn) -> list[LoadResult]:
    """Load (idempotently) the EUR/USD hourly bars and the synthetic 1-minute pairs."""
    instrument, frame = eurusd_hourly()
    # The file's timestamps carry no zone; the package documents none, so they are read as UTC.
    results = load_frames(conn, instrument, "H1", [("backtesting/test/EURUSD.csv", frame)], assume_timezone="UTC",
                          kind="sample")
    for symbol, price in SYNTHETIC_PAIRS.items():
        instrument, frame = synthetic_minutes(symbol, price)
        results += load_frames(conn, instrument, "M1", [(f"synthetic {symbol}", frame)], kind="sample")
    return results
