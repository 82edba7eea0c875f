"""Daily financing (rollover) and margin closeout in the simulator, checked by hand.

March 2024 is before US daylight saving (10 March), so 17:00 New York is 22:00 UTC. H1 bars,
one-pip spread: a buy fills at mid + 0.00005 (EUR_USD) / + 0.005 (USD_JPY).
"""

from __future__ import annotations

import oandapyV20.endpoints.accounts as accounts
import oandapyV20.endpoints.transactions as transactions
import pandas as pd
import pytest
from oandapyV20 import API

from mbats.secmaster.financing import FinancingTerms
from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator
from mbats.venues.oanda.client import register_environment

T0 = pd.Timestamp("2024-03-05 12:00", tz="UTC")  # a Tuesday
TERMS = {"EUR_USD": FinancingTerms("EUR_USD", long_rate=-0.0402, short_rate=0.0105, margin_rate=0.02),
         "USD_JPY": FinancingTerms("USD_JPY", long_rate=0.0381, short_rate=-0.0695, margin_rate=0.04)}


def flat(price_before: float, price_after: float, switch: str, hours: int = 60) -> pd.DataFrame:
    idx = pd.date_range(T0, periods=hours, freq="1h")
    price = [price_before if t < pd.Timestamp(switch, tz="UTC") else price_after for t in idx]
    return pd.DataFrame({"open": price, "high": price, "low": price, "close": price, "volume": 10}, index=idx)


def market(sim: Simulator, instrument: str, units: int) -> dict:
    return sim.account.create_order({"order": {"type": "MARKET", "instrument": instrument, "units": str(units)}})


def test_rollover_at_five_new_york_with_wednesday_triple():
    bars = {"EUR_USD": flat(1.1000, 1.2000, "2024-03-06 12:00"), "USD_JPY": flat(150.0, 150.0, "2024-03-06 12:00")}
    sim = Simulator(bars, "H1", SimConfig(start="2024-03-05T14:00Z", financing=TERMS))
    market(sim, "EUR_USD", 10_000)   # long: pays 4.02 % a year
    market(sim, "USD_JPY", -100_000)  # short: pays 6.95 % a year, in yen
    sim.advance_to("2024-03-06T23:00Z")  # through Tuesday's and Wednesday's 17:00 New York
    daily = [t for t in sim.account.transactions if t["type"] == "DAILY_FINANCING"]
    assert [t["time"][:19] for t in daily] == ["2024-03-05T22:00:00", "2024-03-06T22:00:00"]
    # Tuesday, one day: EUR_USD 10,000 x 1.1000 x -0.0402 / 365; USD_JPY 100,000 x 150 x -0.0695 / 365 yen / 150
    tuesday = 10_000 * 1.1 * -0.0402 / 365 + 100_000 * -0.0695 / 365
    # Wednesday, three days (the weekend), EUR_USD now at 1.2000
    wednesday = 3 * (10_000 * 1.2 * -0.0402 / 365 + 100_000 * -0.0695 / 365)
    assert float(daily[0]["financing"]) == pytest.approx(tuesday, abs=1e-4)  # -20.2525
    assert float(daily[1]["financing"]) == pytest.approx(wednesday, abs=1e-4)  # -60.4882
    by_pair = {p["instrument"]: float(p["financing"]) for p in daily[1]["positionFinancings"]}
    assert by_pair == pytest.approx({"EUR_USD": -3.9649, "USD_JPY": -57.1233}, abs=1e-4)
    assert daily[1]["accountFinancingMode"] == "DAILY"
    summary = sim.account.summary()
    assert float(summary["financing"]) == pytest.approx(tuesday + wednesday, abs=1e-3)
    assert float(summary["balance"]) == pytest.approx(100_000 + tuesday + wednesday, abs=1e-3)
    # long valued at the bid, short at the ask: 10,000 x (1.19995 - 1.10005) - 100,000 x 0.01 / 150
    assert float(summary["unrealizedPL"]) == pytest.approx(999.0 - 100_000 * 0.01 / 150, abs=1e-3)


def test_a_trade_opened_at_the_rollover_is_not_charged_and_one_closed_there_is():
    bars = {"EUR_USD": flat(1.1000, 1.1000, "2024-03-06 12:00")}
    sim = Simulator(bars, "H1", SimConfig(start="2024-03-05T22:00Z", financing=TERMS))
    market(sim, "EUR_USD", -10_000)  # opened at 17:00 New York exactly: after that rollover
    sim.advance_to("2024-03-06T22:00Z")  # Wednesday's rollover has run when the clock reaches it
    market(sim, "EUR_USD", 10_000)  # closed at 22:00: held over Wednesday's rollover, earns 3 days
    daily = [t for t in sim.account.transactions if t["type"] == "DAILY_FINANCING"]
    assert len(daily) == 1 and daily[0]["time"].startswith("2024-03-06T22:00")
    assert float(daily[0]["financing"]) == pytest.approx(3 * 10_000 * 1.1 * 0.0105 / 365, abs=1e-4)  # +0.9493
    trade = next(iter(sim.account.trades.values()))
    assert trade.state == "CLOSED" and trade.financing == pytest.approx(0.94932, abs=1e-4)


def test_margin_closeout_when_nav_falls_to_half_the_margin_used():
    bars = {"EUR_USD": flat(1.1000, 1.0850, "2024-03-05 16:00")}
    sim = Simulator(bars, "H1", SimConfig(start="2024-03-05T14:00Z", balance=1_000.0, financing=TERMS))
    r = market(sim, "EUR_USD", 45_000)  # margin 45,000 x 1.1 x 2 % = 990 of a 1,000 NAV
    assert r["orderFillTransaction"]["price"] == "1.10005"
    sim.advance_to("2024-03-05T15:00Z")  # nothing moved: no closeout
    assert sim.account.open_trades()
    # the 16:00 bar opens at 1.0850 (the price once the 15:00 bar completes): NAV 1,000 - 45,000 x 0.0151
    # = 320.5 is at most half the margin used (45,000 x 1.085 x 2 % = 976.5): everything is closed out
    sim.advance_to("2024-03-05T17:00Z")
    assert not sim.account.open_trades()
    create = next(t for t in sim.account.transactions if t.get("reason") == "MARGIN_CLOSEOUT")
    fill = next(t for t in sim.account.transactions if t.get("reason") == "MARKET_ORDER_MARGIN_CLOSEOUT")
    assert create["type"] == "MARKET_ORDER" and create["marginCloseout"] == {"reason": "MARGIN_CHECK_VIOLATION"}
    assert fill["time"].startswith("2024-03-05T16:00") and fill["price"] == "1.08495"  # the bid of 1.0850
    assert float(fill["pl"]) == pytest.approx(45_000 * (1.08495 - 1.10005))  # -679.50
    assert float(sim.account.summary()["balance"]) == pytest.approx(320.5)


def test_financing_terms_and_transactions_over_the_v20_api():
    bars = {"EUR_USD": flat(1.1000, 1.1000, "2024-03-06 12:00"), "USD_JPY": flat(150.0, 150.0, "2024-03-06 12:00")}
    server = SimServer(Simulator(bars, "H1", SimConfig(start="2024-03-05T14:00Z", financing=TERMS))).start()
    try:
        register_environment(f"sim-{server.port}", server.url)
        api = API(access_token=DEFAULT_TOKEN, environment=f"sim-{server.port}")
        items = {i["name"]: i for i in api.request(accounts.AccountInstruments(DEFAULT_ACCOUNT))["instruments"]}
        assert items["USD_JPY"]["marginRate"] == "0.04"
        fin = items["EUR_USD"]["financing"]
        assert (fin["longRate"], fin["shortRate"]) == ("-0.0402", "0.0105")
        assert {d["dayOfWeek"]: d["daysCharged"] for d in fin["financingDaysOfWeek"]}["WEDNESDAY"] == 3
        server.sim.account.create_order({"order": {"instrument": "USD_JPY", "units": "10000"}})
        server.sim.advance_to("2024-03-05T23:00Z")
        listing = api.request(transactions.TransactionIDRange(DEFAULT_ACCOUNT, params={"from": 1, "to": 99,
                                                                                       "type": "DAILY_FINANCING"}))
        daily = [t for t in listing["transactions"] if t["type"] == "DAILY_FINANCING"]
        assert len(daily) == 1 and float(daily[0]["financing"]) == pytest.approx(10_000 * 0.0381 / 365, abs=1e-4)
        # margin at the instrument's 4 % (above the account's 2 %): 10,000 USD
        assert float(api.request(accounts.AccountSummary(DEFAULT_ACCOUNT))["account"]["marginUsed"]) == \
            pytest.approx(400.0, abs=0.01)
    finally:
        server.stop()
