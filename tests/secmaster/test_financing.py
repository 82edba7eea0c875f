"""Financing/margin terms: the 17:00 New York rollover calendar, the CSV loader and the OANDA loader."""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.errors import DataValidationError
from mbats.marketdata.financing import download_financing
from mbats.secmaster.financing import (FinancingTerms, list_terms, read_schedule, read_terms_file, rollovers,
                                       store_terms)
from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, synthetic_bars
from mbats.config import reset_settings_cache
from mbats.venues.oanda.client import make_client

PAIRS = ("CHF_JPY", "GBP_CHF")  # used by no other suite


@pytest.fixture
def clean(secmaster_conn):
    def wipe():
        with secmaster_conn.cursor() as cur:
            cur.execute("DELETE FROM instruments WHERE symbol = ANY(%s)", (list(PAIRS),))
        secmaster_conn.commit()

    wipe()
    yield secmaster_conn
    secmaster_conn.rollback()
    wipe()


def test_rollovers_follow_new_york_time_across_daylight_saving():
    # US daylight saving starts Sunday 10 March 2024: 17:00 New York is 22:00 UTC before, 21:00 after
    rolls = rollovers(pd.Timestamp("2024-03-06 23:00", tz="UTC"), pd.Timestamp("2024-03-12 23:00", tz="UTC"))
    assert [f"{t:%a %d %H:%M}" for t in rolls["ts"]] == [
        "Thu 07 22:00", "Fri 08 22:00", "Sat 09 22:00", "Sun 10 21:00", "Mon 11 21:00", "Tue 12 21:00"]
    assert list(rolls["weekday"]) == [3, 4, 5, 6, 0, 1]
    terms = FinancingTerms("EUR_USD", -0.0365, 0.0073, 0.02)
    assert [terms.days_on(d) for d in rolls["weekday"]] == [1, 1, 0, 0, 1, 1]
    assert terms.days_on(2) == 3  # Wednesday carries the weekend
    # a Wednesday rollover on 100,000 EUR_USD at 1.0950, long at -3.65 %: 100,000 x 1.095 x -0.0365 x 3 / 365
    assert terms.charge(100_000, 1.0950, 2) == pytest.approx(-32.85)
    assert terms.charge(-100_000, 1.0950, 2) == pytest.approx(6.570)


def test_terms_load_from_a_file_and_the_latest_row_in_force_applies(clean, tmp_path):
    path = tmp_path / "rates.csv"
    path.write_text("instrument,long_rate,short_rate,margin_rate,effective_from\n"
                    "chf_jpy,0.01,-0.03,0.04,\n"
                    "CHF_JPY,0.02,-0.04,0.05,2024-06-01\n"
                    "GBP_CHF,-0.02,0.001,0.0333,\n")
    assert store_terms(clean, read_terms_file(path)) == 3
    schedule = read_schedule(clean, PAIRS)
    assert schedule.at("CHF_JPY", pd.Timestamp("2024-03-01", tz="UTC")).long_rate == 0.01
    assert schedule.at("CHF_JPY", pd.Timestamp("2024-07-01", tz="UTC")).margin_rate == 0.05
    assert schedule.at("GBP_CHF", pd.Timestamp("2024-07-01", tz="UTC")).days_charged == (1, 1, 3, 1, 1, 0, 0)
    # loading again updates rather than duplicates
    assert store_terms(clean, read_terms_file(path)) == 3
    assert len([r for r in list_terms(clean) if r["symbol"] in PAIRS]) == 3


@pytest.mark.parametrize("text, message", [
    ("instrument,long_rate,short_rate\nCHF_JPY,0.01,-0.03\n", "missing column(s) margin_rate"),
    ("instrument,long_rate,short_rate,margin_rate\nCHF_JPY,0.01,-0.03,0.04\nCHFJPY,0.01,0.02,0.04\n",
     "line 3: instrument 'CHFJPY' is not an FX pair"),
    ("instrument,long_rate,short_rate,margin_rate\nCHF_JPY,1.5,-0.03,0.04\n", "line 2: long_rate 1.5 must be"),
    ("instrument,long_rate,short_rate,margin_rate\nCHF_JPY,0.01,-0.03,0\n", "line 2: margin_rate 0.0 must be"),
    ("instrument,long_rate,short_rate,margin_rate\nCHF_JPY,x,-0.03,0.04\n", "line 2: long_rate, short_rate"),
    ("instrument,long_rate,short_rate,margin_rate,days_charged\nCHF_JPY,0.01,-0.03,0.04,1 1 3\n",
     "days_charged (1, 1, 3) must be 7 day counts"),
])
def test_a_bad_rates_file_is_one_clear_error_and_loads_nothing(clean, tmp_path, text, message):
    path = tmp_path / "rates.csv"
    path.write_text(text)
    with pytest.raises(DataValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store_terms(clean, read_terms_file(path))
    assert not [r for r in list_terms(clean) if r["symbol"] in PAIRS]


def test_terms_download_from_the_simulator_account_instruments(clean, monkeypatch):
    bars = {s: synthetic_bars(s, "2024-03-04", "2024-03-05", "H1") for s in PAIRS}
    terms = {"CHF_JPY": FinancingTerms("CHF_JPY", 0.0123, -0.0456, 0.05, days_charged=(1, 1, 3, 1, 1, 0, 0))}
    server = SimServer(Simulator(bars, "H1", SimConfig(financing=terms, max_requests_per_second=None))).start()
    try:
        for key, value in {"ENVIRONMENT": "sim", "SIM_URL": server.url, "TOKEN": DEFAULT_TOKEN,
                           "ACCOUNT_ID": DEFAULT_ACCOUNT}.items():
            monkeypatch.setenv(f"MBATS_OANDA_{key}", value)
        reset_settings_cache()
        stored = download_financing(make_client(), clean)
    finally:
        server.stop()
        reset_settings_cache()
    assert {t.symbol for t in stored} == set(PAIRS)
    today = pd.Timestamp.now(tz="UTC").normalize()
    row = read_schedule(clean, ["CHF_JPY"]).at("CHF_JPY", today)
    assert (row.long_rate, row.short_rate, row.margin_rate, row.source) == (0.0123, -0.0456, 0.05, "oanda:sim")
    assert row.effective_from == today
    # GBP_CHF: the simulator's default terms (no rates in its table, the account's 2 % margin)
    assert read_schedule(clean, ["GBP_CHF"]).at("GBP_CHF", today).margin_rate == 0.02


def test_financing_commands_load_and_list(clean, tmp_path):
    from typer.testing import CliRunner

    from mbats.cli.financing import app

    path = tmp_path / "rates.csv"
    path.write_text("instrument,long_rate,short_rate,margin_rate,days_charged\nCHF_JPY,0.0123,-0.0456,0.04,1 1 3 1 1 0 0\n")
    loaded = CliRunner().invoke(app, ["load", str(path), "--json"])
    assert loaded.exit_code == 0, loaded.output
    listed = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "CHF_JPY" in listed.output and "-4.5600%" in listed.output
    assert "1 1 3 1 1 0 0" in listed.output
