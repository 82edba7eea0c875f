"""Start-up reconciliation: the broker's open orders and positions against the risk database.

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
import pandas as pd

from mbats.errors import NotFoundError
from mbats.marketdata.client import OandaClient

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


def reconcile(client: OandaClient, store, id_prefix: str) -> ReconcileReport:
    account_id = client.require_account()
    body = client.request(accounts_ep.AccountDetails(account_id))
    acct = body["account"]
    report = ReconcileReport(broker_positions=net_positions(acct), last_transaction_id=str(body["lastTransactionID"]))
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

