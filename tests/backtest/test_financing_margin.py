"""Financing (17:00 New York rollover), margin rejection and margin closeout in backtests, by hand.

The same numbers as the simulator's own tests (tests/sim/test_sim_financing.py): March 2024 is
before US daylight saving, so 17:00 New York is 22:00 UTC; one-pip spread, H1 bars; an order
placed on a bar fills at the next bar's open.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, run_backtest, simulate
from mbats.secmaster.financing import FinancingTerms, Schedule

T0 = pd.Timestamp("2024-03-05 12:00", tz="UTC")  # a Tuesday
SCHEDULE = Schedule.of([FinancingTerms("EUR_USD", -0.0402, 0.0105, 0.02),
                        FinancingTerms("USD_JPY", 0.0381, -0.0695, 0.04)])


def flat(before: float, after: float, switch: str, hours: int = 60) -> pd.DataFrame:
    idx = pd.date_range(T0, periods=hours, freq="1h")
    price = [before if t < pd.Timestamp(switch, tz="UTC") else after for t in idx]
    return pd.DataFrame({"open": price, "high": price, "low": price, "close": price, "volume": 10}, index=idx)


class Script(bt.Strategy):
    """Orders at given bar times: {"2024-03-05 13:00": {"EUR_USD": 10000}}; 0 closes the position."""

    params = (("orders", {}),)

    def next(self):
        now = pd.Timestamp(self.datas[0].datetime.datetime(0), tz="UTC").round("s")
        for when, orders in self.p.orders.items():
            if pd.Timestamp(when, tz="UTC") == now:
                for symbol, units in orders.items():
                    data = self.getdatabyname(symbol)
                    if units == 0:
                        self.close(data=data)
                    elif units > 0:
                        self.buy(data=data, size=units)
                    else:
                        self.sell(data=data, size=-units)


def at(sim, when: str, column: str = "value") -> float:
    equity = sim.equity.set_axis(pd.DatetimeIndex(sim.equity.index).round("s"))
    return float(equity.loc[pd.Timestamp(when, tz="UTC"), column])


def spec(instruments, **kw) -> BacktestSpec:
    return BacktestSpec(strategy="x", instruments=instruments, granularity="H1", spread_pips=1.0,
                        account_currency="USD", **kw)


def scripted(orders: dict) -> type[bt.Strategy]:
    return type("Scripted", (Script,), {"params": (("orders", orders),)})


def test_wednesday_rollover_is_three_days_and_booked_in_the_account_currency():
    bars = {"EUR_USD": flat(1.1000, 1.2000, "2024-03-06 12:00"), "USD_JPY": flat(150.0, 150.0, "2024-03-06 12:00")}
    orders = {"2024-03-05 13:00": {"EUR_USD": 10_000, "USD_JPY": -100_000},  # filled at 14:00 Tuesday
              "2024-03-06 23:00": {"EUR_USD": 0, "USD_JPY": 0}}             # closed at 00:00 Thursday
    sim = simulate(spec(["EUR_USD", "USD_JPY"]), bars, scripted(orders), SCHEDULE)
    rows = pd.DataFrame(sim.financing)
    assert [f"{t:%a %H:%M}" for t in rows["ts"]] == ["Tue 22:00", "Tue 22:00", "Wed 22:00", "Wed 22:00"]
    assert list(rows["days"]) == [1, 1, 3, 3]
    # EUR_USD long 10,000 at -4.02 %: 10,000 x 1.1 x -0.0402 / 365 = -1.2115, Wednesday at 1.2 x 3 = -3.9649
    # USD_JPY short 100,000 at -6.95 %: 100,000 x 150 x -0.0695 / 365 yen = -2,856.16 JPY = -19.0411 USD at 150
    expected = {("EUR_USD", 1): 10_000 * 1.1 * -0.0402 / 365, ("EUR_USD", 3): 3 * 10_000 * 1.2 * -0.0402 / 365,
                ("USD_JPY", 1): 100_000 * -0.0695 / 365, ("USD_JPY", 3): 3 * 100_000 * -0.0695 / 365}
    for row in rows.itertuples():
        assert row.amount == pytest.approx(expected[(row.instrument, row.days)], abs=1e-9)
    jpy = rows[rows["instrument"] == "USD_JPY"].iloc[0]
    assert jpy["amount_quote"] == pytest.approx(-2856.1644, abs=1e-4) and jpy["fx_rate"] == pytest.approx(1 / 150)
    total = sum(expected.values())  # -81.3407
    trades = sim.trades.set_index("instrument")
    assert trades.loc["EUR_USD", "financing"] == pytest.approx(expected[("EUR_USD", 1)] + expected[("EUR_USD", 3)])
    assert trades.loc["USD_JPY", "financing"] == pytest.approx(expected[("USD_JPY", 1)] + expected[("USD_JPY", 3)])
    # final balance: EUR_USD +1,000 less 1 pip of 10,000 (1.00); USD_JPY 0 less 1 pip of 100,000 yen at 150 (6.67)
    final = 100_000 + 1_000 - 1.0 - 100_000 * 0.01 / 150 + total
    assert sim.equity["value"].iloc[-1] == pytest.approx(final, abs=1e-6)
    # the equity curve takes the charge at the rollover, not before
    before, after = at(sim, "2024-03-05 21:00"), at(sim, "2024-03-05 22:00")
    assert after - before == pytest.approx(expected[("EUR_USD", 1)] + expected[("USD_JPY", 1)], abs=1e-9)


def test_an_order_beyond_the_margin_is_rejected_as_oanda_rejects_it():
    bars = {"EUR_USD": flat(1.1000, 1.1000, "2024-03-06 12:00")}
    # 1,000 USD at 2 %: 50,000 EUR_USD needs 1,100 (rejected); 45,000 needs 990 (accepted)
    orders = {"2024-03-05 13:00": {"EUR_USD": 50_000}, "2024-03-05 15:00": {"EUR_USD": 45_000}}
    sim = simulate(spec(["EUR_USD"], cash=1_000.0), bars, scripted(orders), SCHEDULE)
    statuses = [o["status"] for o in sim.recording.orders.values()]
    assert statuses == ["margin", "completed"]
    [event] = sim.risk_events
    assert event["rule"] == "INSUFFICIENT_MARGIN" and event["ts"] == pd.Timestamp("2024-03-05 14:00", tz="UTC")
    assert "+50000 units" in event["detail"]
    assert sim.trades["size"].tolist() == [45_000]
    # margin used recorded: 45,000 x 1.1 x 2 % = 990 from the fill on
    assert at(sim, "2024-03-05 16:00", "margin_used") == pytest.approx(990.0)
    assert at(sim, "2024-03-05 14:00", "margin_used") == 0.0


def test_margin_closeout_when_nav_falls_to_half_the_margin_used():
    bars = {"EUR_USD": flat(1.1000, 1.0850, "2024-03-05 16:00")}
    sim = simulate(spec(["EUR_USD"], cash=1_000.0), bars, scripted({"2024-03-05 13:00": {"EUR_USD": 45_000}}),
                   SCHEDULE)
    # at the 16:00 open (1.0850): NAV 1,000 - 2.25 entry cost + 45,000 x (1.08495 - 1.1000) = 320.50
    # <= half of 45,000 x 1.085 x 2 % = 976.50: closed out at that open
    [event] = sim.risk_events
    assert event["rule"] == "MARGIN_CLOSEOUT" and event["ts"] == pd.Timestamp("2024-03-05 16:00", tz="UTC")
    [trade] = sim.trades.to_dict("records")
    assert trade["exit_ts"] == pd.Timestamp("2024-03-05 16:00", tz="UTC") and trade["exit_price"] == 1.085
    assert trade["pnl_net"] == pytest.approx(45_000 * (1.085 - 1.1) - 2 * 2.25)  # -679.50
    assert sim.equity["value"].iloc[-1] == pytest.approx(320.5)  # the simulator's balance after its closeout


def test_closeout_of_a_short_usd_jpy_position_at_the_exact_bar(monkeypatch):
    """A USD account short 20,000 USD_JPY (P&L converted at 1 / USD_JPY, margin 4 %), cash 1,000.

    At mid m: NAV = 1,000 - 20,000 x (m + 0.005 - 150.005) / m, margin used 20,000 x 4 % = 800 USD, so
    the closeout (NAV <= 400) starts at m >= 149.99 / 0.97 = 154.6289: 154.60 keeps the position,
    154.70 closes it. The per-bar check's shortcut (a safe price band per account change) must
    close out on exactly the bar that checking every bar in full does.
    """
    idx = pd.date_range(T0, periods=12, freq="1h")
    price = [150.0] * 4 + [154.60] * 4 + [154.70] * 4  # 154.60 from 16:00, 154.70 from 20:00
    bars = {"USD_JPY": pd.DataFrame({"open": price, "high": price, "low": price, "close": price, "volume": 10},
                                    index=idx)}
    orders = scripted({"2024-03-05 13:00": {"USD_JPY": -20_000}})  # sold at the 14:00 open

    def run():
        return simulate(spec(["USD_JPY"], cash=1_000.0), bars, orders, SCHEDULE)

    sim = run()
    [event] = sim.risk_events
    assert event["rule"] == "MARGIN_CLOSEOUT" and event["ts"] == pd.Timestamp("2024-03-05 20:00", tz="UTC")
    # the equity curve marks at the mid (less the entry's spread): 1,000 - 20,000 x (154.60 - 149.995) / 154.60
    assert at(sim, "2024-03-05 19:00") == pytest.approx(1_000 - 20_000 * (154.60 - 149.995) / 154.60)
    assert at(sim, "2024-03-05 19:00", "margin_used") == pytest.approx(800.0)

    from mbats.backtest.account import OandaAccountMixin

    monkeypatch.setattr(OandaAccountMixin, "_safe_band",  # no shortcut: the full check on every bar
                        lambda self: (self._version, None, None, 0.0, 0.0, 0.0, 0.0, False))
    full = run()
    assert full.risk_events == sim.risk_events
    pd.testing.assert_frame_equal(full.equity, sim.equity, check_exact=True)
    cols = [c for c in sim.trades.columns if c != "trade_ref"]
    pd.testing.assert_frame_equal(full.trades[cols], sim.trades[cols], check_exact=True)


def test_financing_rows_and_margin_are_recorded_in_the_risk_db(risk_conn):
    wave = flat(1.1, 1.1, "2024-03-06 12:00", hours=120)
    for column in ("open", "high", "low", "close"):
        wave[column] = (1.1 + 0.01 * np.sin(np.arange(120) / 5.0)).round(5)
    result = run_backtest(BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="H1",
                                       params={"fast": 3, "slow": 8}, account_currency="USD"),
                          track=False, write_report=True, bars={"EUR_USD": wave}, schedule=SCHEDULE)
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*), coalesce(sum(amount), 0) FROM financing WHERE run_id = %s", (result.run_id,))
        count, total = cur.fetchone()
        cur.execute("SELECT broker FROM runs WHERE id = %s", (result.run_id,))
        broker = cur.fetchone()[0]
        cur.execute("SELECT max(margin_used) FROM equity WHERE run_id = %s", (result.run_id,))
        margin_max = cur.fetchone()[0]
        cur.execute("SELECT coalesce(sum(financing), 0) FROM trades WHERE run_id = %s", (result.run_id,))
        by_trades = cur.fetchone()[0]
    assert count > 0 and total == pytest.approx(broker["financing_total"]) and total == pytest.approx(by_trades)
    assert broker["financing"] == "rates: file" and margin_max == pytest.approx(broker["margin_used_max"])
    assert margin_max == pytest.approx(10_000 * 1.11 * 0.02, rel=0.01)  # 10,000 units near the wave's top
    html = open(result.report_path, encoding="utf-8").read()
    assert f"financing {total:+,.2f}" in html and f"max margin used {margin_max:,.2f}" in html



def test_financing_can_be_turned_off_and_the_run_says_so():
    bars = {"EUR_USD": flat(1.1000, 1.2000, "2024-03-06 12:00")}
    orders = {"2024-03-05 13:00": {"EUR_USD": 10_000}}
    on = simulate(spec(["EUR_USD"]), bars, scripted(orders), SCHEDULE)
    off = simulate(spec(["EUR_USD"], financing=False), bars, scripted(orders), SCHEDULE)
    assert len(on.financing) == 3 and off.financing == []  # Tuesday, Wednesday (x3), Thursday and off.financing_note.startswith("off: financing=False")
    assert on.equity["value"].iloc[-1] - off.equity["value"].iloc[-1] == pytest.approx(
        sum(f["amount"] for f in on.financing))
    assert simulate(spec(["EUR_USD"]), bars, scripted(orders)).financing_note.startswith("off: no rates stored")
