"""A real OANDA simulator on a free loopback port, and settings that point the real client at it."""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.config import reset_settings_cache
from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, synthetic_bars

# symbols other test suites do not use, so cleaning them up touches nobody else's data
SYMBOL = "AUD_NZD"
OTHERS = ("CAD_CHF", "NZD_CHF")
DATA_START, DATA_END = "2024-03-04", "2024-03-14"  # 11,580 M1 bars (3 pages) over a weekend and a DST change


@pytest.fixture
def sim_bars() -> dict[str, pd.DataFrame]:
    return {s: synthetic_bars(s, DATA_START, DATA_END, "M1") for s in (SYMBOL, *OTHERS)}


@pytest.fixture
def sim_server(sim_bars):
    server = SimServer(Simulator(sim_bars, "M1", SimConfig(max_requests_per_second=120))).start()
    yield server
    server.stop()


@pytest.fixture
def oanda_env(sim_server, monkeypatch):
    """Settings for the `sim` environment with fast retries; returns the server."""
    monkeypatch.setenv("MBATS_OANDA_ENVIRONMENT", "sim")
    monkeypatch.setenv("MBATS_OANDA_SIM_URL", sim_server.url)
    monkeypatch.setenv("MBATS_OANDA_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("MBATS_OANDA_ACCOUNT_ID", DEFAULT_ACCOUNT)
    monkeypatch.setenv("MBATS_OANDA_RETRY_MAX_WAIT", "0.05")
    monkeypatch.setenv("MBATS_OANDA_RETRY_ATTEMPTS", "4")
    reset_settings_cache()
    yield sim_server
    reset_settings_cache()


@pytest.fixture
def clean_symbols(secmaster_conn):
    """Remove this suite's instruments and bars before (and after) a test."""

    def wipe():
        with secmaster_conn.cursor() as cur:
            cur.execute("DELETE FROM bars WHERE instrument_id IN (SELECT id FROM instruments WHERE symbol = ANY(%s))",
                        ([SYMBOL, *OTHERS],))
            cur.execute("DELETE FROM instruments WHERE symbol = ANY(%s)", ([SYMBOL, *OTHERS],))
        secmaster_conn.commit()

    wipe()
    yield secmaster_conn
    secmaster_conn.rollback()
    wipe()
