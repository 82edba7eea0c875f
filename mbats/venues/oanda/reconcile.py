"""Start-up reconciliation: the broker's open orders and positions against the risk database.

First the transactions since the last one the run recorded are replayed into the database
(:func:`replay_transactions`): every fill, trade close, stop-loss / take-profit / trailing-stop
fill and cancellation that happened while the runner was down, so after a crash the database
equals the broker.

The broker wins. Positions the database last recorded but the account does not hold (or holds
in another size) are logged and superseded by the account's; orders the database thinks alive
get the state OANDA gives for their client order id; pending orders of this session found at
OANDA but unknown to the database are adopted into it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import oandapyV20.endpoints.accounts as accounts_ep
import oandapyV20.endpoints.orders as orders_ep
import oandapyV20.endpoints.transactions as transactions_ep
import pandas as pd

from mbats.errors import NotFoundError
from mbats.venues.oanda.client import OandaClient
from mbats.venues.oanda.financing import financing_rows

log = logging.getLogger(__name__)
_STATUS = {"PENDING": "accepted", "FILLED": "completed", "TRIGGERED": "completed", "CANCELLED": "canceled"}


@dataclass
class ReconcileReport:
    broker_positions: dict[str, float] = field(default_factory=dict)
    db_positions: dict[str, float] = field(default_factory=dict)
    position_differences: list[str] = field(default_factory=list)
    order_updates: list[str] = field(default_factory=list)
    adopted_orders: list[str] = field(default_factory=list)
    last_transaction_id: str = "0"
    replayed: dict = field(default_factory=dict)  # transactions replayed since the last recorded one

    @property
    def clean(self) -> bool:
        return not (self.position_differences or self.order_updates or self.adopted_orders)

    def to_json(self) -> dict:
        return asdict(self)


def net_positions(account: dict) -> dict[str, float]:
    out = {}
    for p in account.get("positions", []):
        units = float(p["long"]["units"]) + float(p["short"]["units"])
        if units:
            out[p["instrument"]] = units
    return out


def reconcile(client: OandaClient, store, id_prefix: str, replay_since: str | None = None) -> ReconcileReport:
    account_id = client.require_account()
    replayed = replay_transactions(client, store, replay_since) if store is not None and replay_since else {}
    body = client.request(accounts_ep.AccountDetails(account_id))
    acct = body["account"]
    report = ReconcileReport(broker_positions=net_positions(acct), last_transaction_id=str(body["lastTransactionID"]),
                             replayed=replayed)
    if store is None:
        return report
    report.db_positions = store.last_positions()
    for name in sorted(set(report.broker_positions) | set(report.db_positions)):
        broker, db = report.broker_positions.get(name, 0.0), report.db_positions.get(name, 0.0)
        if broker != db:
            report.position_differences.append(f"{name}: database {db:+.0f}, broker {broker:+.0f} (broker wins)")
    known = set()
    for row in store.open_orders():
        known.add(row["order_ref"])
        try:
            state = client.request(orders_ep.OrderDetails(account_id, f"@{row['order_ref']}"))["order"]["state"]
        except NotFoundError:
            state = None
        status = _STATUS.get(state, "rejected")
        if status != row["status"]:
            store.set_order_status(row["order_ref"], status)
            report.order_updates.append(f"{row['order_ref']}: database {row['status']}, broker {state or 'unknown'}")
    for o in acct.get("orders", []):
        cid = (o.get("clientExtensions") or {}).get("id", "")
        if cid.startswith(id_prefix + ".") and cid not in known and o.get("type") in ("LIMIT", "STOP", "MARKET"):
            store.upsert_order({"order_ref": cid, "client_order_id": cid, "instrument": o["instrument"],
                                "created_at": pd.Timestamp(o["createTime"]).to_pydatetime(),
                                "side": "buy" if float(o["units"]) > 0 else "sell", "order_type": o["type"].lower(),
                                "size": abs(float(o["units"])), "price": float(o["price"]) if "price" in o else None,
                                "status": "accepted", "updated_at": None})
            report.adopted_orders.append(cid)
    for line in report.position_differences + report.order_updates + [f"adopted {c}" for c in report.adopted_orders]:
        log.warning("reconciliation: %s", line)
    store.note(reconciliation=report.to_json())
    return report


_CANCEL_STATUS = {"TIME_IN_FORCE_EXPIRED": "expired", "CLIENT_REQUEST": "canceled", "LINKED_TRADE_CLOSED": "canceled"}


def replay_transactions(client: OandaClient, store, since: str | int) -> dict:
    """Write into the run every fill, trade close and order end OANDA recorded after transaction ``since``.

    Fills are keyed by transaction id (written once). A trade the database holds open is closed
    with the broker's realized P&L when the broker's position in that instrument is flat; a trade
    opened and closed while the runner was down is added whole. Returns what was written.
    """
    account_id = client.require_account()
    body = client.request(transactions_ep.TransactionsSinceID(account_id, params={"id": str(since)}))
    txns = body.get("transactions", [])
    out = {"since": str(since), "transactions": len(txns), "fills": 0, "orders": 0, "trades_closed": 0,
           "trades_added": 0, "last_transaction_id": str(body.get("lastTransactionID", since))}
    open_rows = store.open_trades()  # instrument → row
    closing: dict[str, dict] = {}  # instrument → units, value, pnl, ts, commission of the open row's exits
    new_trades: dict[str, dict] = {}  # OANDA trade id → row of a trade opened while down
    for txn in txns:
        kind = txn.get("type")
        cid = txn.get("clientOrderID") or (txn.get("clientExtensions") or {}).get("id")
        if kind == "ORDER_CANCEL" and cid:
            store.set_order_status(cid, _CANCEL_STATUS.get(txn.get("reason", ""), "rejected"))
            out["orders"] += 1
        if kind == "DAILY_FINANCING" and hasattr(store, "insert_financing"):
            held = {i: (r["size"] if r["direction"] == "long" else -r["size"]) for i, r in open_rows.items()}
            store.insert_financing(financing_rows(txn, held))  # keyed by rollover and instrument: once
        if kind != "ORDER_FILL":
            continue
        instrument, ts = txn["instrument"], pd.Timestamp(txn["time"]).to_pydatetime()
        store.insert_fill({"fill_id": int(txn["id"]), "order_ref": cid or f"oanda:{txn.get('orderID')}",
                           "instrument": instrument, "ts": ts, "size": float(txn["units"]),
                           "price": float(txn["price"]), "commission": float(txn.get("commission", 0) or 0)})
        out["fills"] += 1
        if cid:
            store.set_order_status(cid, "completed")
            out["orders"] += 1
        exits = list(txn.get("tradesClosed") or []) + ([txn["tradeReduced"]] if txn.get("tradeReduced") else [])
        for e in exits:
            units, price, pnl = abs(float(e["units"])), float(e["price"]), float(e.get("realizedPL", 0) or 0)
            row = new_trades.get(e["tradeID"])
            if row is None and instrument in open_rows:
                row = closing.setdefault(instrument, {"units": 0.0, "value": 0.0, "pnl": 0.0, "ts": ts})
            if row is None:
                continue  # a trade of another session or from before this run
            row["units"] += units
            row["value"] += units * price
            row["pnl"] += pnl
            row["ts"] = ts
        opened = txn.get("tradeOpened")
        if opened:
            units = float(opened["units"])
            new_trades[opened["tradeID"]] = {"instrument": instrument, "direction": "long" if units > 0 else "short",
                                            "size": abs(units), "entry_ts": ts, "entry_price": float(opened["price"]),
                                            "units": 0.0, "value": 0.0, "pnl": 0.0, "ts": ts}
    flat = _flat_instruments(client, account_id, set(closing))
    for instrument, c in closing.items():
        row = open_rows[instrument]
        if instrument not in flat or not c["units"]:
            continue
        store.upsert_trade(_closed_row(row | {"trade_ref": row["trade_ref"]}, c))
        out["trades_closed"] += 1
    for trade_id, t in new_trades.items():
        if t["units"] >= t["size"]:  # opened and closed while down
            store.upsert_trade(_closed_row({"trade_ref": trade_id, **t}, t))
            out["trades_added"] += 1
    store.note(last_transaction_id=out["last_transaction_id"])
    return out


def _flat_instruments(client: OandaClient, account_id: str, names: set[str]) -> set[str]:
    if not names:
        return set()
    acct = client.request(accounts_ep.AccountDetails(account_id))["account"]
    held = net_positions(acct)
    return {n for n in names if not held.get(n)}


def _closed_row(row: dict, c: dict) -> dict:
    exit_price = c["value"] / c["units"]
    sign = 1.0 if row["direction"] == "long" else -1.0
    return {"trade_ref": row["trade_ref"], "instrument": row["instrument"], "direction": row["direction"],
            "size": row["size"], "entry_ts": row["entry_ts"], "entry_price": row["entry_price"],
            "exit_ts": c["ts"], "exit_price": exit_price, "pnl": c["pnl"], "pnl_net": c["pnl"], "commission": 0.0,
            "return_pct": 100.0 * sign * (exit_price / row["entry_price"] - 1.0) if row["entry_price"] else None,
            "is_open": False}

