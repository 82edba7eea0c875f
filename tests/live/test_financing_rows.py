"""Paper/live financing: the broker's DAILY_FINANCING transactions become risk-DB financing rows, once."""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.venues.oanda.financing import days_charged, financing_rows

# Wednesday 2024-03-06 17:00 New York (22:00 UTC): the triple rollover; 10,000 EUR_GBP held long
TXN = {"id": "57", "type": "DAILY_FINANCING", "time": "2024-03-06T22:00:00.000000000Z", "financing": "-2.4612",
       "positionFinancings": [{"instrument": "EUR_GBP", "financing": "-2.4612", "quoteFinancing": "-1.9233",
                               "openTradeFinancings": [{"tradeID": "12", "financing": "-2.4612",
                                                        "quoteFinancing": "-1.9233", "financingRate": "-0.0272"}]}]}


def test_a_daily_financing_transaction_becomes_one_row_per_position():
    [row] = financing_rows(TXN, {"EUR_GBP": 10_000.0})
    assert row["ts"] == pd.Timestamp("2024-03-06 22:00", tz="UTC")
    assert (row["instrument"], row["units"], row["days"]) == ("EUR_GBP", 10_000.0, 3)
    assert (row["amount"], row["amount_quote"], row["annual_rate"]) == (-2.4612, -1.9233, -0.0272)
    assert row["fx_rate"] == pytest.approx(2.4612 / 1.9233)
    # the mid recovered from the quote amount: 1.9233 x 365 / (10,000 x 0.0272 x 3)
    assert row["price"] == pytest.approx(1.9233 * 365 / (10_000 * 0.0272 * 3))
    assert financing_rows({"type": "ORDER_FILL"}, {}) == []


def test_days_charged_follow_the_new_york_weekday():
    assert days_charged(pd.Timestamp("2024-03-06 22:00", tz="UTC")) == 3   # Wednesday 17:00 New York
    assert days_charged(pd.Timestamp("2024-03-07 22:00", tz="UTC")) == 1
    assert days_charged(pd.Timestamp("2024-07-10 21:00", tz="UTC")) == 3   # summer time: 21:00 UTC


def test_replaying_the_transactions_writes_each_rollover_once(risk_conn):
    from mbats.risk.live import LiveStore

    with risk_conn.cursor() as cur:
        cur.execute("INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version, status) "
                    "VALUES ('paper', 'paper', 'sma', ARRAY['EUR_GBP'], 'H1', 1e5, 't', 'running') RETURNING id")
        run_id = cur.fetchone()[0]
    risk_conn.commit()
    store = LiveStore(risk_conn)
    store.run_id = run_id
    try:
        for _ in range(2):  # the session, then a restart replaying the account's transactions
            store.insert_financing(financing_rows(TXN, {"EUR_GBP": 10_000.0}))
        with risk_conn.cursor() as cur:
            cur.execute("SELECT instrument, days, amount FROM financing WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("EUR_GBP", 3, -2.4612)]
    finally:
        with risk_conn.cursor() as cur:
            cur.execute("DELETE FROM runs WHERE id = %s", (run_id,))
