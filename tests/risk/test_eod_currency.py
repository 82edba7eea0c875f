"""End-of-day risk in the account currency: conversion (direct, inverse, through USD) and stress, by hand."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from mbats.risk.eod import account_rate, stress_pnl
from mbats.secmaster.ingest import load_frames
from mbats.secmaster.instruments import Instrument

PAIRS = {"USD_SEK": 10.0, "USD_NOK": 10.5}  # used by no other suite


@pytest.fixture
def daily_bars(secmaster_conn):
    def wipe():
        with secmaster_conn.cursor() as cur:
            cur.execute("DELETE FROM bars WHERE instrument_id IN (SELECT id FROM instruments WHERE symbol = ANY(%s))",
                        (list(PAIRS),))
            cur.execute("DELETE FROM loads WHERE instrument_id IN (SELECT id FROM instruments WHERE symbol = ANY(%s))",
                        (list(PAIRS),))
            cur.execute("DELETE FROM instruments WHERE symbol = ANY(%s)", (list(PAIRS),))
        secmaster_conn.commit()

    wipe()
    days = pd.date_range("2024-03-04 22:00", periods=4, freq="1D", tz="UTC")
    for symbol, price in PAIRS.items():
        frame = pd.DataFrame({"time": days, "open": price, "high": price, "low": price, "close": price, "volume": 1})
        load_frames(secmaster_conn, Instrument.fx(symbol, "test"), "D", [("test", frame)])
    yield secmaster_conn
    wipe()


def test_account_rate_direct_inverse_and_through_usd(daily_bars):
    end = datetime(2024, 3, 9, tzinfo=timezone.utc)
    assert account_rate(daily_bars, "SEK", end, {}, "USD") == pytest.approx(1 / 10.0)  # USD_SEK inverted
    assert account_rate(daily_bars, "USD", end, {}, "NOK") == pytest.approx(10.5)  # USD_NOK direct
    assert account_rate(daily_bars, "SEK", end, {}, "NOK") == pytest.approx(10.5 / 10.0)  # SEK -> USD -> NOK
    assert account_rate(daily_bars, "SEK", end, {}, "CHF") is None  # no USD_CHF stored: unpriced, never 1.0


def test_stress_moves_against_usd_are_restated_against_the_account_currency():
    # USD account, long 10,000 EUR (11,000 USD short): EUR -2 % against USD loses 200 USD
    assert stress_pnl({"EUR": 10_000.0, "USD": -10_000.0}, {"EUR": -0.02}, "USD") == pytest.approx({"EUR": -200.0})
    # EUR account, the same position valued in EUR: the EUR leg cannot move against EUR; the short USD leg
    # rises 1 / 0.98 - 1 = 2.0408 % against EUR: -204.08 EUR
    pnl = stress_pnl({"EUR": 10_000.0, "USD": -10_000.0}, {"EUR": -0.02}, "EUR")
    assert pnl == pytest.approx({"USD": -10_000.0 * (1 / 0.98 - 1)})
    # JPY account, a GBP exposure when GBP -8 % and JPY +3 % against USD: 0.92 / 1.03 - 1
    assert stress_pnl({"GBP": 1_000_000.0}, {"GBP": -0.08, "JPY": 0.03}, "JPY")["GBP"] == pytest.approx(
        1_000_000.0 * (0.92 / 1.03 - 1))
