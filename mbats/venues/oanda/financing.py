"""OANDA's DAILY_FINANCING transactions as rows of the risk DB's ``financing`` table.

A paper or live run books the financing the broker (OANDA or the simulator) charged, one row per
position and rollover, in the same table backtests write (:data:`mbats.risk.store.FINANCING_COLUMNS`).
The table's key (run, rollover time, instrument) makes the write idempotent: replaying the
account's transactions after a restart writes nothing twice.

OANDA states the account-currency amount, the quote-currency amount and each trade's annual rate;
the units are the position held over the rollover (the runner's, as the transactions are applied
in order), the days charged follow OANDA's rule (Wednesday's rollover charges 3) and the mid is
recovered from the quote amount (``|amount| x 365 / (|units| x rate x days)``; 0 when undefined).
"""

from __future__ import annotations

import pandas as pd

from mbats.secmaster.financing import DAY_BASIS

NEW_YORK = "America/New_York"


def days_charged(ts: pd.Timestamp) -> int:
    """OANDA's days charged by the rollover at ``ts`` (17:00 New York): Wednesday 3, else 1."""
    return 3 if pd.Timestamp(ts).tz_convert(NEW_YORK).weekday() == 2 else 1


def financing_rows(txn: dict, units: dict[str, float]) -> list[dict]:
    """The ``financing`` rows of one DAILY_FINANCING transaction; ``units``: instrument -> signed position."""
    if txn.get("type") != "DAILY_FINANCING":
        return []
    ts = pd.Timestamp(txn["time"])
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    days = days_charged(ts)
    rows = []
    for p in txn.get("positionFinancings") or []:
        amount = float(p.get("financing", 0) or 0)
        quote = float(p.get("quoteFinancing", 0) or 0) or amount
        trades = p.get("openTradeFinancings") or []
        rate = float(trades[0].get("financingRate", 0) or 0) if trades else 0.0
        held = float(units.get(p["instrument"], 0.0))
        price = abs(quote) * DAY_BASIS / (abs(held) * abs(rate) * days) if held and rate else 0.0
        rows.append({"ts": ts.to_pydatetime(), "instrument": p["instrument"], "units": held, "price": price,
                     "annual_rate": rate, "days": days, "amount_quote": quote,
                     "fx_rate": amount / quote if quote else 1.0, "amount": amount})
    return rows
