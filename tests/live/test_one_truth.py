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
from tests.live.conftest import sim_settings

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
