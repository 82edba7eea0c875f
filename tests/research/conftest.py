"""Sample bars for the research tests, built in memory (no secmaster load needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.config import reset_settings_cache
from mbats.secmaster.samples import eurusd_hourly, synthetic_minutes


@pytest.fixture(scope="session")
def eurusd_h1() -> pd.DataFrame:
    _, frame = eurusd_hourly()
    frame = frame.rename(columns={c: c.lower() for c in frame.columns})
    stamp = frame.columns[0]
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop(stamp)), name="ts").tz_localize("UTC")
    return frame.set_index(index)[["open", "high", "low", "close", "volume"]]


@pytest.fixture(scope="session")
def gbpusd_m1() -> pd.DataFrame:
    """One week of synthetic 1-minute bars (~7k)."""
    _, frame = synthetic_minutes("GBP_USD", 1.27, "2024-01-01", "2024-01-08")
    return frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))


@pytest.fixture
def numpy_engine(monkeypatch):
    """The sweep core's pure-numpy engine (what runs where numba is unavailable)."""
    monkeypatch.setenv("MBATS_COMPILED_CORE", "false")
    reset_settings_cache()
    yield
    monkeypatch.delenv("MBATS_COMPILED_CORE")
    reset_settings_cache()
