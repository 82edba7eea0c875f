"""One truth (issue 13 item 7): the same strategy over the same bars gives the same fills, P&L,
financing and final balance, trade by trade, in a backtest and in a paper session against the
simulator replaying those bars — over a USD-quoted pair, USD_JPY and a cross (EUR_GBP, converted
through GBP_USD), across a week with a Wednesday rollover.

How the two line up: the paper session backfills the first ``WARMUP`` bars (as long as the slow
average needs, so neither side could trade earlier) and then steps the simulator one bar at a
time; the backtest runs over the same bars. Both fill at the next bar's open; the simulator fills
at its bid/ask (mid ∓ half the one-pip spread), the backtest at the mid plus half the spread as a
cost, which is the same money.

Both sides book by one rule, :func:`mbats.kernel.fx.realised_pl` (OANDA's): a trade's realised
P&L is (exit - entry fill price) x units, the spread inside the prices, converted at the close's
rate; financing at its rollover's rate. So fills, every trade's P&L and the final balance agree to
1e-6 for USD_JPY and the cross too; financing per rollover differs only by the simulator's
4-decimal rounding of the DAILY_FINANCING amount strings (its balance keeps the exact amounts).

The paper run's own record in the risk DB is in USD too: each trade's P&L is OANDA's realised P&L
(equal to the backtest's to the cent), its exit price the closing fill's, its financing the
rollovers it was held over, and every open position's unrealised P&L is converted at the bar's rate.
"""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig
from mbats.live.session import run
from mbats.secmaster.financing import Schedule, simulator_terms
from mbats.sim import SimConfig, SimServer, Simulator, synthetic_bars
from tests.live.conftest import risk_rows, sim_settings

START, END = "2024-03-04", "2024-03-08 20:00"  # Monday to Friday: four rollovers, Wednesday's triple
PAIRS = ("EUR_USD", "USD_JPY", "EUR_GBP", "GBP_USD")
WARMUP = 8
PARAMS = {"fast": 3, "slow": WARMUP}


def week() -> dict[str, pd.DataFrame]:
    return {s: synthetic_bars(s, START, END, "H1", seed=5) for s in PAIRS}


def paper(bars: dict[str, pd.DataFrame], symbol: str, risk_conn):
    first_live = bars[symbol].index[WARMUP]
    server = SimServer(Simulator(bars, "H1", SimConfig(start=first_live.isoformat(), heartbeat_seconds=0.3,
                                                       stream_poll_seconds=0.01, max_requests_per_second=None))).start()
    try:
        cfg = LiveConfig("sma_crossover", [symbol], params=dict(PARAMS), granularity="H1",
                         until=bars[symbol].index[-1].to_pydatetime(), warmup=WARMUP, sim_step=True)
        result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
        return result, server.sim.account
    finally:
        server.stop()


def backtest(bars: dict[str, pd.DataFrame], symbol: str):
    spec = BacktestSpec(strategy="sma_crossover", instruments=[symbol], granularity="H1", params=dict(PARAMS),
                        spread_pips=1.0, account_currency="USD", sizer="fixed:units=10000")
    return simulate(spec, bars, schedule=Schedule.of(simulator_terms(PAIRS).values()))


@pytest.mark.parametrize("symbol", ["EUR_USD", "USD_JPY", "EUR_GBP"])
def test_backtest_and_paper_session_agree_trade_by_trade(symbol, risk_conn):
    bars = week()
    sim = backtest(bars, symbol)
    result, account = paper(bars, symbol, risk_conn)
    assert result.status == "finished"
    pip = 0.01 if symbol.endswith("JPY") else 0.0001

    # fills: same bars, same sizes; the simulator's price is the mid ± half a pip
    sim_fills = [t for t in account.transactions if t["type"] == "ORDER_FILL"]
    bt_fills = sim.recording.fills
    assert len(bt_fills) >= 4 and len(sim_fills) == len(bt_fills)
    for mine, theirs in zip(bt_fills, sim_fills):
        assert pd.Timestamp(theirs["time"]) == mine["ts"]
        assert float(theirs["units"]) == mine["size"]
        assert float(theirs["price"]) == pytest.approx(mine["price"] + (pip / 2 if mine["size"] > 0 else -pip / 2),
                                                       abs=1e-9)

    # the paper run's own record (risk DB) holds the simulator's fills
    with risk_conn.cursor() as cur:
        cur.execute("SELECT size, price FROM fills WHERE run_id = %s ORDER BY fill_id", (result.run_id,))
        recorded = cur.fetchall()
    risk_conn.rollback()
    assert recorded == [(float(t["units"]), float(t["price"])) for t in sim_fills]

    # trades: entry/exit times, units, P&L in USD after costs (the simulator's realizedPL has the spread in it)
    closed = sim.trades[~sim.trades["is_open"].astype(bool)].reset_index(drop=True)
    sim_trades = [t for t in account.trades.values() if t.state == "CLOSED"]
    assert len(sim_trades) == len(closed)
    for row, trade in zip(closed.itertuples(), sim_trades):
        assert pd.Timestamp(trade.open_time, tz="UTC") == row.entry_ts
        assert abs(trade.initial_units) == row.size
        assert trade.realized_pl == pytest.approx(row.pnl_net, abs=1e-6)
        assert trade.financing == pytest.approx(row.financing, abs=1e-6)

    # the paper run's trades in the risk DB: P&L in USD (OANDA's realised P&L, converted at the close's
    # rate) equal to the backtest's to the cent, and by hand; the exit price is the closing fill's price
    fills_at = {pd.Timestamp(t["time"]): float(t["price"]) for t in sim_fills}
    exit_rates = {f["ts"]: f.get("fx_rate", 1.0) for f in bt_fills}  # no conversion: no rate
    rows = risk_rows(risk_conn, "SELECT direction, size, entry_ts, entry_price, exit_ts, exit_price, pnl, pnl_net, "
                                "return_pct, financing FROM trades WHERE run_id = %s AND NOT is_open "
                                "ORDER BY entry_ts", result.run_id)
    assert len(rows) == len(closed)
    for (direction, size, entry_ts, entry_price, exit_ts, exit_price, pnl, pnl_net, ret, financing), row in \
            zip(rows, closed.itertuples()):
        sign = 1.0 if direction == "long" else -1.0
        assert (pd.Timestamp(entry_ts), size) == (row.entry_ts, row.size)
        assert entry_price == pytest.approx(fills_at[pd.Timestamp(entry_ts)], abs=1e-12)
        # the closing fill's price, not recovered from a P&L in another currency
        assert exit_price == pytest.approx(fills_at[pd.Timestamp(exit_ts)], abs=1e-12)
        assert pnl == pytest.approx(row.pnl_net, abs=1e-4)  # the backtest's USD figure after costs
        assert pnl == pytest.approx(sign * size * (exit_price - entry_price) * exit_rates[row.exit_ts], abs=1e-4)
        assert pnl_net == pnl  # the simulator charges no commission: the spread is in the prices
        assert ret == pytest.approx(100.0 * sign * (exit_price / entry_price - 1.0))
        # the rollovers the trade was held over, as the backtest books them (4-decimal amounts at the simulator)
        assert financing == pytest.approx(row.financing, abs=1e-3)
        if symbol != "EUR_USD":  # a rate far from 1: the quote-currency figure would be visibly wrong
            assert abs(exit_rates[row.exit_ts] - 1.0) > 0.1

    # open positions marked at each bar's close, in USD at that moment's rate: USD_JPY converts its own
    # yen (1 / close); the cross takes OANDA's conversion factor of its latest price (GBP_USD's mid, which
    # in the replay is that bar's GBP_USD close)
    marks = risk_rows(risk_conn, "SELECT ts, size, avg_price, market_price, unrealized_pnl FROM positions "
                                 "WHERE run_id = %s AND size <> 0 ORDER BY ts", result.run_id)
    assert len(marks) >= 10
    for ts, size, avg, close, upl in marks:
        in_quote = size * (close - avg)
        if symbol == "EUR_USD":
            assert upl == pytest.approx(in_quote, abs=1e-9)
        elif symbol == "USD_JPY":
            assert upl == pytest.approx(in_quote / close, abs=1e-9)
        else:
            gbp_usd = bars["GBP_USD"]["close"].asof(pd.Timestamp(ts))
            assert upl == pytest.approx(in_quote * gbp_usd, rel=1e-6, abs=1e-9)

    # financing: every rollover, same amount per instrument
    daily = [(pd.Timestamp(t["time"]), float(p["financing"])) for t in account.transactions
             if t["type"] == "DAILY_FINANCING" for p in t["positionFinancings"]]
    booked = [(f["ts"], f["amount"]) for f in sim.financing]
    assert len(booked) >= 3 and any(f["days"] == 3 for f in sim.financing)
    assert [t for t, _ in daily] == [t for t, _ in booked]
    assert [a for _, a in daily] == pytest.approx([a for _, a in booked], abs=1e-4)

    # the paper run's risk-DB financing rows: the simulator's DAILY_FINANCING, per rollover, as the backtest's rows
    with risk_conn.cursor() as cur:
        cur.execute("SELECT ts, instrument, units, days, amount_quote, fx_rate, amount FROM financing "
                    "WHERE run_id = %s ORDER BY ts", (result.run_id,))
        paper_rows = cur.fetchall()
    risk_conn.rollback()
    assert [(pd.Timestamp(r[0]), r[1], r[2], r[3]) for r in paper_rows] == \
        [(f["ts"], f["instrument"], f["units"], f["days"]) for f in sim.financing]
    assert [r[6] for r in paper_rows] == pytest.approx([f["amount"] for f in sim.financing], abs=1e-4)
    assert [r[4] for r in paper_rows] == pytest.approx([f["amount_quote"] for f in sim.financing], abs=1e-4)
    assert [r[5] for r in paper_rows] == pytest.approx([f["fx_rate"] for f in sim.financing], rel=1e-3)

    # final balance: cash + realised P&L after costs + financing, identical
    balance = 100_000 + closed["pnl_net"].sum() + sum(a for _, a in booked)
    open_trades = sim.trades[sim.trades["is_open"].astype(bool)]
    if len(open_trades):  # the backtest paid the open trade's entry spread already; the simulator values it in its NAV
        balance += float(open_trades["commission"].sum())
    assert account.balance == pytest.approx(balance, abs=1e-6)
