"""Account currency: P&L and costs converted at the rate of the moment, checked by hand."""

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.errors import MbatsError


class BuyOnFifthSellOnTenth(bt.Strategy):
    def next(self):
        if len(self) == 5:
            self.buy(size=10_000)
        elif len(self) == 10:
            self.close()


TS = pd.date_range("2024-01-02", periods=20, freq="1h", tz="UTC")


def bars(opens, spread=0.0) -> pd.DataFrame:
    o = np.asarray(opens, dtype=float)
    return pd.DataFrame({"open": o, "high": o * 1.001, "low": o * 0.999, "close": o, "volume": 1}, index=TS)


def test_usd_jpy_trade_pnl_is_in_usd_at_the_exit_rate():
    # Buy 10,000 USD_JPY at 150.00 (bar 5), sell at 151.50 (bar 10): +15,000 JPY, at 1/151.50 USD per JPY.
    opens = np.full(20, 150.0)
    opens[10:] = 151.5
    spec = BacktestSpec(strategy="x", instruments=["USD_JPY"], granularity="H1", cash=100_000,
                        spread_pips=2.0, account_currency="USD")
    sim = simulate(spec, {"USD_JPY": bars(opens)}, BuyOnFifthSellOnTenth)
    [trade] = sim.trades.to_dict("records")
    assert trade["pnl"] == pytest.approx(15_000 / 151.5)               # 99.01 USD, not 15,000
    # spread 2 pips of 0.01 JPY: half (0.01 JPY) per unit per fill = 100 JPY a fill. OANDA has the spread
    # in the fill prices (150.01, 151.49) and converts the realised 14,800 JPY at the exit's rate
    assert trade["commission"] == pytest.approx(200 / 151.5)
    assert trade["pnl_net"] == pytest.approx(14_800 / 151.5)           # 97.69 USD
    buy, sell = sim.recording.fills
    assert buy["fx_rate"] == pytest.approx(1 / 150.0) and sell["fx_rate"] == pytest.approx(1 / 151.5)
    # the account ends at cash + the converted net P&L, and was marked in USD in between
    assert sim.equity["value"].iloc[-1] == pytest.approx(100_000 + trade["pnl_net"])
    assert sim.equity["value"].iloc[7] == pytest.approx(100_000 - 100 / 150.0)  # flat price: only the entry cost
    # OANDA's balance moves when the units close, not at the entry (the spread sits in the open trade)
    assert sim.equity["cash"].iloc[7] == pytest.approx(100_000)
    assert sim.equity["cash"].iloc[-1] == pytest.approx(100_000 + 14_800 / 151.5)


def test_commission_on_notional_is_converted_at_its_own_fill_and_the_spread_at_the_exit():
    # as above with a 0.2 bp commission: 10,000 x 150.00 x 0.00002 = 30 JPY at the entry (1/150),
    # 10,000 x 151.50 x 0.00002 = 30.30 JPY at the exit (1/151.5); the 200 JPY of spread at the exit's rate
    opens = np.full(20, 150.0)
    opens[10:] = 151.5
    spec = BacktestSpec(strategy="x", instruments=["USD_JPY"], granularity="H1", cash=100_000,
                        spread_pips=2.0, commission=0.00002, account_currency="USD")
    sim = simulate(spec, {"USD_JPY": bars(opens)}, BuyOnFifthSellOnTenth)
    [trade] = sim.trades.to_dict("records")
    assert trade["commission"] == pytest.approx(30 / 150.0 + (200 + 30.3) / 151.5)
    assert trade["pnl_net"] == pytest.approx(15_000 / 151.5 - 30 / 150.0 - 230.3 / 151.5)
    assert sim.equity["cash"].iloc[7] == pytest.approx(100_000 - 30 / 150.0)
    assert sim.equity["value"].iloc[-1] == pytest.approx(100_000 + trade["pnl_net"])


def test_eur_gbp_trade_is_converted_through_gbp_usd():
    # Sell 10,000 EUR_GBP... here buy at 0.8600, sell at 0.8550: -50 GBP, GBP_USD 1.25 then 1.30 at exit.
    eurgbp = np.full(20, 0.86)
    eurgbp[10:] = 0.855
    gbpusd = np.full(20, 1.25)
    gbpusd[9:] = 1.30
    spec = BacktestSpec(strategy="x", instruments=["EUR_GBP"], granularity="H1", account_currency="USD")
    sim = simulate(spec, {"EUR_GBP": bars(eurgbp), "GBP_USD": bars(gbpusd)}, BuyOnFifthSellOnTenth)
    [trade] = sim.trades.to_dict("records")
    assert trade["pnl"] == pytest.approx(-50.0 * 1.30)                 # -65 USD
    assert sim.equity["value"].iloc[-1] == pytest.approx(100_000 - 65.0)
    # while open, the GBP loss-free position is marked at GBP_USD: entry at bar 5, price flat until bar 10
    assert sim.equity["value"].iloc[8] == pytest.approx(100_000)


def test_a_cross_converts_through_usd_into_a_non_usd_account():
    # EUR account, GBP P&L: GBP -> USD (GBP_USD 1.25) -> EUR (EUR_USD 1.10 inverted).
    eurgbp = np.full(20, 0.86)
    eurgbp[10:] = 0.87
    spec = BacktestSpec(strategy="x", instruments=["EUR_GBP"], granularity="H1", account_currency="EUR")
    # EUR_GBP itself converts GBP into EUR directly (inverted): that route comes first
    sim = simulate(spec, {"EUR_GBP": bars(eurgbp)}, BuyOnFifthSellOnTenth)
    assert sim.trades["pnl"].iloc[0] == pytest.approx(100.0 / 0.87)
    spec = BacktestSpec(strategy="x", instruments=["GBP_CHF"], granularity="H1", account_currency="EUR")
    gbpchf = np.full(20, 1.10)
    gbpchf[10:] = 1.11
    sim = simulate(spec, {"GBP_CHF": bars(gbpchf), "USD_CHF": bars(np.full(20, 0.90)),
                          "EUR_USD": bars(np.full(20, 1.08))}, BuyOnFifthSellOnTenth)
    assert sim.trades["pnl"].iloc[0] == pytest.approx(100.0 / 0.90 / 1.08)   # CHF -> USD -> EUR


def test_a_missing_conversion_series_names_the_pair_to_load():
    spec = BacktestSpec(strategy="x", instruments=["EUR_GBP"], granularity="H1", account_currency="USD")
    with pytest.raises(MbatsError, match=r"no H1 bars to convert GBP P&L; load GBP_USD \(or USD_GBP\)"):
        simulate(spec, {"EUR_GBP": bars(np.full(20, 0.86))}, BuyOnFifthSellOnTenth)


def test_a_usd_quoted_pair_in_a_usd_account_is_untouched():
    opens = 1.0 + np.arange(20) * 0.01
    spec = BacktestSpec(strategy="x", instruments=["EUR_USD"], granularity="H1", spread_pips=1.0)
    assert spec.account_currency == "USD"
    sim = simulate(spec, {"EUR_USD": bars(opens)}, BuyOnFifthSellOnTenth)
    assert sim.trades["pnl"].iloc[0] == pytest.approx(10_000 * (opens[10] - opens[5]))
    assert "fx_rate" not in sim.recording.fills[0]   # backtrader's own books, no re-booking


def test_the_account_currency_is_validated():
    with pytest.raises(MbatsError, match="account_currency"):
        BacktestSpec(strategy="x", instruments=["EUR_USD"], account_currency="usd")


def test_fixed_slippage_is_paid_on_every_fill_and_off_by_default():
    opens = np.full(20, 1.05)
    opens[10:] = 1.06
    base = dict(strategy="x", instruments=["EUR_USD"], granularity="H1", spread_pips=1.0)
    plain = simulate(BacktestSpec(**base), {"EUR_USD": bars(opens)}, BuyOnFifthSellOnTenth).trades.iloc[0]
    slipped = simulate(BacktestSpec(**base, slippage_pips=0.5), {"EUR_USD": bars(opens)},
                       BuyOnFifthSellOnTenth).trades.iloc[0]
    # 10,000 units x 0.5 pip (0.00005) x 2 fills = 1.00 USD more than the spread alone (2 x 0.5 USD)
    assert plain["pnl"] == slipped["pnl"] == pytest.approx(100.0)
    assert plain["commission"] == pytest.approx(1.0)
    assert slipped["commission"] == pytest.approx(2.0)
    assert slipped["pnl_net"] == pytest.approx(98.0)
    with pytest.raises(MbatsError, match="slippage_pips"):
        BacktestSpec(**base, slippage_pips=-1.0)


def test_the_run_records_its_account_currency_prices_and_slippage(pg_server):
    from mbats.backtest.runner import run_backtest
    from mbats.db import connect

    opens = np.full(20, 150.0)
    opens[10:] = 151.5
    spec = BacktestSpec(strategy="sma_crossover", instruments=["USD_JPY"], granularity="H1", account_currency="USD",
                        slippage_pips=0.3, params={"fast": 2, "slow": 4})
    result = run_backtest(spec, track=False, write_report=False, bars={"USD_JPY": bars(opens)})
    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT broker FROM runs WHERE id = %s", (result.run_id,))
            [broker] = cur.fetchone()
    finally:
        conn.close()
    assert broker["account_currency"] == "USD" and broker["slippage_pips"] == 0.3
    assert broker["prices"] == "mid + configured spread"


def test_bid_ask_round_trip_buys_at_the_ask_and_sells_at_the_bid():
    frame = bars(np.r_[np.full(10, 1.1000), np.full(10, 1.1100)])
    frame["bid_open"] = frame["open"] - 0.0001
    frame["ask_open"] = frame["open"] + 0.0002      # asymmetric on purpose: not a half-spread
    frame.loc[frame.index[10]:, "bid_open"] = 1.1098
    frame.loc[frame.index[10]:, "ask_open"] = 1.1101
    spec = BacktestSpec(strategy="x", instruments=["EUR_USD"], granularity="H1", spread_pips=5.0)  # spread unused
    sim = simulate(spec, {"EUR_USD": frame}, BuyOnFifthSellOnTenth)
    [trade] = sim.trades.to_dict("records")
    # buy 10,000 at the ask 1.1002 (bar 5), sell at the bid 1.1098 (bar 10): 10,000 x 0.0096 = 96.00 USD
    assert trade["pnl_net"] == pytest.approx(96.0)
    assert trade["commission"] == pytest.approx(10_000 * 0.0002 + 10_000 * 0.0002)
    assert sim.equity["value"].iloc[-1] == pytest.approx(100_000 + 96.0)
    from mbats.backtest.runner import BID_ASK, MID_SPREAD, price_sources

    assert price_sources(spec, {"EUR_USD": frame}) == {"EUR_USD": BID_ASK}
    assert price_sources(spec, {"EUR_USD": bars(np.full(20, 1.1))}) == {"EUR_USD": MID_SPREAD}


def test_bid_ask_with_slippage_and_conversion():
    # USD_JPY with bid/ask: buy at the ask 150.03, sell at the bid 150.98, 0.5 pip (0.005 JPY) slippage each way
    frame = bars(np.r_[np.full(10, 150.0), np.full(10, 151.0)])
    frame["bid_open"] = frame["open"] - 0.02
    frame["ask_open"] = frame["open"] + 0.03
    spec = BacktestSpec(strategy="x", instruments=["USD_JPY"], granularity="H1", slippage_pips=0.5)
    sim = simulate(spec, {"USD_JPY": frame}, BuyOnFifthSellOnTenth)
    [trade] = sim.trades.to_dict("records")
    entry_cost_jpy, exit_cost_jpy = 10_000 * (0.03 + 0.005), 10_000 * (0.02 + 0.005)
    assert trade["pnl"] == pytest.approx(10_000 * 1.0 / 151.0)
    assert trade["commission"] == pytest.approx((entry_cost_jpy + exit_cost_jpy) / 151.0)  # both at the exit's rate
    assert sim.equity["value"].iloc[-1] == pytest.approx(100_000 + trade["pnl_net"])


def test_converted_books_balance_trade_by_trade_with_reversals_and_two_pairs():
    # USD_JPY (converted) and GBP_USD (not) traded long and short with reversals: the account's final value
    # is the cash plus every closed trade's converted net P&L plus the open positions, to the cent.
    from mbats.secmaster.samples import synthetic_minutes

    _, frame = synthetic_minutes("GBP_USD", 1.27, "2024-01-01", "2024-01-04")
    gbpusd = frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))
    usdjpy = gbpusd.copy()
    usdjpy[["open", "high", "low", "close"]] *= 118.0
    spec = BacktestSpec("sma_crossover", ["USD_JPY", "GBP_USD"], "M1", spread_pips=1.0, commission=0.00002,
                        params=dict(fast=5, slow=20, allow_short=True))
    sim = simulate(spec, {"USD_JPY": usdjpy, "GBP_USD": gbpusd})
    closed = sim.trades[~sim.trades["is_open"].astype(bool)]
    assert (closed["instrument"] == "USD_JPY").sum() > 50 and set(closed["direction"]) == {"long", "short"}
    jpy = closed[closed["instrument"] == "USD_JPY"]
    assert jpy["pnl"].abs().max() < 50   # USD, not yen: 10,000 units moving a few dozen pips
    # an open position's entry (its instrument's last fill: the signal strategy opens with a fill of its own)
    # costs its spread at the last close's rate, its commission on notional at its fill's rate
    marks = {"USD_JPY": 1 / usdjpy["close"].iloc[-1], "GBP_USD": 1.0}
    open_entry_costs = 0.0
    for p in sim.positions:
        f = [f for f in sim.recording.fills if f["instrument"] == p["instrument"]][-1]
        notional = abs(f["size"]) * f["price"] * spec.commission
        open_entry_costs += (f["commission"] / f["fx_rate"] - notional) * marks[p["instrument"]] + notional * f["fx_rate"]
    unrealised = sum(p["unrealized_pnl"] for p in sim.positions)
    assert sim.equity["value"].iloc[-1] == pytest.approx(
        spec.cash + closed["pnl_net"].sum() + unrealised - open_entry_costs, abs=1e-6)
