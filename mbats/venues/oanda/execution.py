"""A backtrader broker trading an OANDA v20 account (practice, live or the simulator).

Everything the account does reaches the strategy through one path: the account's transactions
since the last one seen (``/transactions/sinceid``), read after every request that changes
something and once per bar. Market, limit and stop orders go out with a client order id in
``clientExtensions``; a bracket (``buy_bracket``/``sell_bracket``) goes out as one order with
``stopLossOnFill``/``takeProfitOnFill`` and its two children follow OANDA's stop-loss and
take-profit orders. Cash is the account balance, value its NAV; positions start from the account
(the broker wins over anything the strategy or the database believed).

Client order ids are deterministic (run, bar time, instrument, n-th order on that bar), and
before sending an order the broker asks OANDA for that id: a runner killed between submit and
acknowledgement re-decides the same order on restart and adopts it instead of sending it twice.
An order POST is never retried blindly either: when it fails (timeout, 5xx, a lost answer) the
client order id is looked up — in the order list and in the transaction history, since OANDA
only refuses a duplicate client id while the first order is still pending — and only an order
OANDA never saw is sent again (:meth:`OandaClient.send_once`).

Order types: market, limit and stop entries; brackets whose stop may be a trailing stop
(``stopexec=bt.Order.StopTrail, stopargs={"trailamount": distance}`` → ``trailingStopLossOnFill``);
``valid=`` on a limit/stop → OANDA GTD (``gtdTime``). What OANDA cannot do is refused with a
clear reason, never dropped silently: ``oco=`` (OANDA has no OCO between entries), a day-only
``valid``, stand-alone trailing or stop-limit entries.
"""

from __future__ import annotations

import collections
import logging

import backtrader as bt
import oandapyV20.endpoints.accounts as accounts_ep
import oandapyV20.endpoints.orders as orders_ep
import oandapyV20.endpoints.positions as positions_ep
import oandapyV20.endpoints.transactions as transactions_ep
import pandas as pd

from mbats.kernel.costs import FxCosts
from mbats.errors import MbatsError, NotFoundError
from mbats.venues.oanda.client import OandaClient
from mbats.venues.oanda.financing import financing_rows

log = logging.getLogger(__name__)
_TYPES = {bt.Order.Market: "MARKET", bt.Order.Limit: "LIMIT", bt.Order.Stop: "STOP"}
_ENTRY_TYPES = ("LIMIT", "STOP", "MARKET_IF_TOUCHED")


class _Refused(Exception):
    """An order OANDA cannot carry out as asked: rejected back to the strategy with this reason."""

_ORDER_TYPE_NAMES = {bt.Order.Market: "market", bt.Order.Limit: "limit", bt.Order.Stop: "stop",
                     bt.Order.StopTrail: "stop_trail"}
_CHILD_KINDS = {"STOP_LOSS_ORDER": bt.Order.Stop, "TAKE_PROFIT_ORDER": bt.Order.Limit,
                "TRAILING_STOP_LOSS_ORDER": bt.Order.StopTrail}


def fill_realised_pl(txn: dict) -> float:
    """OANDA's realised P&L of an ORDER_FILL in the account currency: the trades it closed or reduced.

    OANDA converts each at the rate of the fill (its ``realizedPL``; the fill's ``pl`` is their sum),
    so a USD_JPY or EUR_GBP trade of a USD account is booked in dollars, as backtests book it.
    """
    parts = [*(txn.get("tradesClosed") or []), *([txn["tradeReduced"]] if txn.get("tradeReduced") else [])]
    if parts:
        return sum(float(p.get("realizedPL", 0) or 0) for p in parts)
    return float(txn.get("pl", 0) or 0)


class _BookedFill:
    """The commission info a fill's order notification carries.

    backtrader's Trade does not take a fill's P&L from the order: it recomputes it with
    ``comminfo.profitandloss`` (quote currency). This one answers with what OANDA booked for the fill
    (account currency) and otherwise behaves as the instrument's own commission info. It also
    carries the financing of the trade the fill closes, for the risk DB's trade row.
    """

    def __init__(self, base: bt.CommInfoBase, realised_pl: float, financing: float = 0.0) -> None:
        self.base, self.realised_pl = base, realised_pl
        self.financing = financing  # account currency, of the trade this fill closes (0 if none)

    def profitandloss(self, size: float, price: float, newprice: float) -> float:
        return self.realised_pl

    def __getattr__(self, name: str):
        return getattr(self.base, name)


def _price(x: float, instrument: str) -> str:
    return f"{x:.3f}" if instrument.endswith("JPY") else f"{x:.5f}"


class OandaBroker(bt.broker.BrokerBase):
    """Orders to OANDA, fills and cancellations back as backtrader notifications."""

    params = (("client", None), ("hub", None), ("risk", None), ("store", None), ("id_prefix", "mbats"))

    def __init__(self) -> None:
        super().__init__()
        self.client: OandaClient = self.p.client
        self.account = self.client.require_account()
        self.notifs: collections.deque = collections.deque()
        self.positions: dict[str, bt.Position] = collections.defaultdict(bt.Position)
        self.trade_ids: dict[str, str] = {}  # instrument → OANDA trade id of the open position
        self.by_oanda: dict[str, bt.Order] = {}  # OANDA order id → backtrader order
        self.by_client: dict[str, bt.Order] = {}
        self.pending_children: dict[int, list[bt.Order]] = collections.defaultdict(list)
        self.children: dict[int, list[bt.Order]] = {}  # parent ref → [stop, limit] children
        self.trade_children: dict[str, list[bt.Order]] = {}  # OANDA trade id → children
        self.datas: dict[str, bt.AbstractDataBase] = {}
        self.cash = self.value = 0.0
        self.last_txn = "0"
        self._per_bar: dict[tuple, int] = collections.defaultdict(int)
        self._seen_bars = -1
        self._inherited: list = []
        self.stopped_by_kill_switch = False
        # every pending entry order of the account (ours, earlier sessions', manual): OANDA id → (instrument, units)
        self.pending_entries: dict[str, tuple[str, float]] = {}
        # instrument -> financing (account currency) of the position held now, since it opened
        self.held_financing: dict[str, float] = collections.defaultdict(float)
        self.on_bar = None  # callback run once per new bar before the strategy (kill switch, drift check)
        self.on_fill = None  # callback(txn) for every fill recorded (alerts); must not raise
        self.addcommissioninfo(FxCosts())

    # --- account state ----------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self.load_account()

    def load_account(self) -> dict:
        """Balance, NAV, open positions and the last transaction id, straight from the account."""
        body = self.client.request(accounts_ep.AccountDetails(self.account))
        acct = body["account"]
        self.cash, self.value = float(acct["balance"]), float(acct["NAV"])
        self.startingcash, self.startingvalue = self.cash, self.value
        self.last_txn = str(body["lastTransactionID"])
        self.positions.clear()
        self.trade_ids.clear()
        for p in acct.get("positions", []):
            for side in ("long", "short"):
                units = float(p[side]["units"])
                if units:
                    self.positions[p["instrument"]] = bt.Position(units, float(p[side]["averagePrice"]))
                    self.trade_ids[p["instrument"]] = p[side]["tradeIDs"][0]
        self.pending_entries = {o["id"]: (o["instrument"], float(o["units"])) for o in acct.get("orders", [])
                                if o.get("type") in _ENTRY_TYPES and o.get("state", "PENDING") == "PENDING"}
        return acct

    def pending_units(self) -> dict[str, tuple[float, float]]:
        """Instrument → (units pending to buy, units pending to sell ≤ 0) over every pending entry order."""
        out: dict[str, tuple[float, float]] = {}
        for instrument, units in self.pending_entries.values():
            buy, sell = out.get(instrument, (0.0, 0.0))
            out[instrument] = (buy + max(units, 0.0), sell + min(units, 0.0))
        return out

    def refresh(self) -> None:
        body = self.client.request(accounts_ep.AccountSummary(self.account))
        self.cash, self.value = float(body["account"]["balance"]), float(body["account"]["NAV"])

    def data_started(self, data) -> None:
        """Called by the feed at start; an inherited position is announced on the feed's first bar."""
        self.datas[data._name] = data
        pos = self.positions.get(data._name)
        if pos is not None and pos.size:
            self._inherited.append(data)

    def _announce_inherited(self) -> None:
        """Tell the strategy about a position it inherits (restart): a simulated, already-filled order."""
        for data in [d for d in self._inherited if len(d)]:
            self._inherited.remove(data)
            pos = self.positions[data._name]
            cls = bt.BuyOrder if pos.size > 0 else bt.SellOrder
            order = cls(data=data, size=pos.size, price=pos.price, exectype=bt.Order.Market, simulated=True)
            order.addcomminfo(self.getcommissioninfo(data))
            order.execute(data.datetime[0], pos.size, pos.price, 0, 0.0, 0.0, pos.size, 0.0, 0.0, 0.0, 0.0,
                          pos.size, pos.price)
            order.completed()
            self.notify(order)

    def getcash(self) -> float:
        return self.cash

    def getvalue(self, datas=None) -> float:
        return self.value

    def getposition(self, data, clone: bool = True) -> bt.Position:
        pos = self.positions[data._name]
        return pos.clone() if clone else pos

    def get_notification(self):
        return self.notifs.popleft() if self.notifs else None

    def notify(self, order: bt.Order) -> None:
        self.notifs.append(order.clone())

    def deliver_notifications(self, strategy: bt.Strategy) -> None:
        """Hand the strategy (and its analyzers) the notifications still queued when the run ends.

        An order sent on the last bar fills at the venue after backtrader's last round of
        notifications; without this its fill never reaches the trades (the risk DB's last trade
        would stay open though OANDA closed it).
        """
        while self.notifs:
            order = self.notifs.popleft()
            if order is not None:
                owner = order.owner if order.owner is not None else strategy  # bool() of a strategy is a line op
                owner._addnotification(order, quicknotify=True)

    def next(self) -> None:
        self._announce_inherited()
        hub = self.p.hub
        delivered = sum(hub.stats.bars.values()) if hub is not None else 0
        if delivered != self._seen_bars:  # once per new bar, not on every idle loop
            self._seen_bars = delivered
            self.poll_changes()
            if self.on_bar is not None:  # runs before the strategy sees the bar (cerebro calls brokers first)
                self.on_bar()
        self.notifs.append(None)  # notification boundary, as backtrader's brokers do

    # --- orders -------------------------------------------------------------------------------
    def buy(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None, tradeid=0, oco=None,
            trailamount=None, trailpercent=None, parent=None, transmit=True, **kwargs):
        return self._order(bt.BuyOrder, owner, data, size, price, plimit, exectype, valid, tradeid, parent,
                           transmit, kwargs, oco, trailamount, trailpercent)

    def sell(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None, tradeid=0, oco=None,
             trailamount=None, trailpercent=None, parent=None, transmit=True, **kwargs):
        return self._order(bt.SellOrder, owner, data, size, price, plimit, exectype, valid, tradeid, parent,
                           transmit, kwargs, oco, trailamount, trailpercent)

    def _order(self, cls, owner, data, size, price, plimit, exectype, valid, tradeid, parent, transmit, kwargs,
               oco=None, trailamount=None, trailpercent=None):
        order = cls(owner=owner, data=data, size=size, price=price, pricelimit=plimit, exectype=exectype,
                    valid=valid, tradeid=tradeid, parent=parent, transmit=transmit, oco=oco,
                    trailamount=trailamount, trailpercent=trailpercent)
        order.addinfo(**kwargs)
        order.addcomminfo(self.getcommissioninfo(data))
        if oco is not None:  # refused, not ignored: OANDA cannot cancel one entry when another fills
            order.addinfo(refused="oco= (one-cancels-other) is not supported live: OANDA has no OCO between "
                                  "entry orders; use a bracket (buy_bracket/sell_bracket) instead")
        if not transmit:
            self.pending_children[(parent or order).ref].append(order)
            return order
        if parent is not None:  # the last child of a bracket: send parent + both children as one order
            group = self.pending_children.pop(parent.ref, [])
            entry, kids = group[0], group[1:] + [order]
            self.children[entry.ref] = kids
            self._send(entry, kids)
            return order
        self._send(order, [])
        return order

    def _client_id(self, order: bt.Order) -> str:
        data = order.data
        ts = bt.num2date(data.datetime[0]) if len(data) else pd.Timestamp.utcnow()
        key = (data._name, f"{ts:%Y%m%d%H%M%S}")
        self._per_bar[key] += 1
        return f"{self.p.id_prefix}.{key[1]}.{key[0]}.{self._per_bar[key]}"

    def _reject(self, order: bt.Order, kids: list[bt.Order], reason: str, record: bool = True) -> None:
        for o in [order, *kids]:
            o.addinfo(reject_reason=reason)
            o.reject(self)
            self.notify(o)
            if record:
                self._record_order(o)

    def _send(self, order: bt.Order, kids: list[bt.Order]) -> None:
        data, instrument = order.data, order.data._name
        units = int(round(order.size))  # BuyOrder sizes are positive, SellOrder negative
        client_id = self._client_id(order)
        order.addinfo(client_id=client_id)
        for i, kid in enumerate(kids):
            kid.addinfo(client_id=f"{client_id}.{'sl' if kid.exectype == bt.Order.Stop else 'tp'}{i}")
        if not getattr(data, "bar_is_live", True):  # warm-up bar: the strategy only sees history
            self._reject(order, kids, "warm-up bar: orders are sent from the first live bar on", record=False)
            return
        try:
            body = self._order_body(order, kids, instrument, units, client_id)
        except _Refused as exc:
            log.error("order %s refused: %s", client_id, exc)
            self._reject(order, kids, str(exc))
            return
        risk = self.p.risk
        if risk is not None:
            breach = risk.check_order(instrument, units, self.positions, self._mid, client_id,
                                      pending=self.pending_units())
            if breach is not None:
                self._reject(order, kids, breach)
                return
        for o in [order, *kids]:
            o.submit(self)
            self.notify(o)
            self._record_order(o)
        self.by_client[client_id] = order
        existing = self._find_client_order(client_id)
        if existing is not None:  # sent before a crash: adopt it, do not send twice
            log.warning("order %s already at OANDA (id %s, %s): adopting it", client_id, existing["id"],
                        existing["state"])
            self._adopt(order, kids, existing)
            self.poll()
            return
        if risk is not None:
            risk.note_submitted()
        seen = self.last_txn
        try:
            _, found = self.client.send_once(orders_ep.OrderCreate(self.account, data={"order": body}),
                                             lambda: self._find_client_order(client_id, since=seen))
        except MbatsError as exc:
            log.error("order %s rejected: %s", client_id, exc)
            self._reject(order, kids, str(exc))
            return
        if found is not None and int(found["id"]) <= int(self.last_txn):
            self._adopt(order, kids, found)  # already applied (cannot happen mid-session, kept for safety)
        self.poll()  # the order's own transactions accept and fill it, whether the answer arrived or not

    def _order_body(self, order: bt.Order, kids: list[bt.Order], instrument: str, units: int,
                    client_id: str) -> dict:
        """The OANDA order request, or :class:`_Refused` naming what cannot be done live."""
        if "refused" in order.info:
            raise _Refused(order.info.refused)
        kind = _TYPES.get(order.exectype)
        if kind is None:
            raise _Refused(f"{order.getordername()} entry orders are not supported live (OANDA has market, limit "
                           "and stop entries; trailing stops only as a bracket's stop loss)")
        body = {"type": kind, "instrument": instrument, "units": str(units),
                "clientExtensions": {"id": client_id, "tag": self.p.id_prefix}}
        if order.exectype == bt.Order.Market:
            body["timeInForce"] = "FOK"  # fills at once or not at all: a validity has nothing to limit
        else:
            body["price"] = _price(order.price, instrument)
            body.update(self._time_in_force(order))
        for kid in kids:
            ext = {"clientExtensions": {"id": kid.info.client_id}}
            if kid.exectype == bt.Order.StopTrail:
                if not kid.trailamount:
                    raise _Refused("a trailing stop needs stopargs={'trailamount': distance} (price units); "
                                   "trailpercent is not supported by OANDA")
                body["trailingStopLossOnFill"] = {"distance": _price(kid.trailamount, instrument),
                                                  "timeInForce": "GTC", **ext}
            elif kid.exectype == bt.Order.Stop:
                body["stopLossOnFill"] = {"price": _price(kid.price, instrument), "timeInForce": "GTC", **ext}
            elif kid.exectype == bt.Order.Limit:
                body["takeProfitOnFill"] = {"price": _price(kid.price, instrument), "timeInForce": "GTC", **ext}
            else:
                raise _Refused(f"a bracket child of type {kid.getordername()} is not supported live")
        return body

    @staticmethod
    def _time_in_force(order: bt.Order) -> dict:
        if order.valid is None:
            return {"timeInForce": "GTC"}
        until = pd.Timestamp(bt.num2date(order.valid), tz="UTC")
        return {"timeInForce": "GTD", "gtdTime": until.isoformat().replace("+00:00", "Z")}

    def _find_client_order(self, client_id: str, since: str | None = None) -> dict | None:
        """OANDA's record of the order with ``client_id``: by id, else in the transactions since ``since``."""
        try:
            return self.client.request(orders_ep.OrderDetails(self.account, f"@{client_id}"))["order"]
        except NotFoundError:
            pass
        if since is None:
            return None
        body = self.client.request(transactions_ep.TransactionsSinceID(self.account, params={"id": since}))
        for txn in body.get("transactions", []):
            ext = (txn.get("clientExtensions") or {}).get("id") or txn.get("clientOrderID")
            if ext == client_id and txn.get("type", "").endswith(("_ORDER", "_ORDER_REJECT")):
                if txn["type"].endswith("_REJECT"):
                    return {"id": txn["id"], "state": "REJECTED"}
                try:
                    return self.client.request(orders_ep.OrderDetails(self.account, txn["id"]))["order"]
                except NotFoundError:
                    return {"id": txn["id"], "state": "UNKNOWN"}
        return None

    def _adopt(self, order: bt.Order, kids: list[bt.Order], existing: dict) -> None:
        self.by_oanda[existing["id"]] = order
        if existing["state"] == "PENDING":
            order.accept(self)
            self.notify(order)
        elif existing["state"] == "FILLED":
            # its fill is already in the positions loaded from the account: complete without counting it twice
            order.execute(order.data.datetime[0], order.size, order.price or 0.0, 0, 0.0, 0.0, 0, 0.0, 0.0,
                          0.0, 0.0, self.positions[order.data._name].size, self.positions[order.data._name].price)
            order.completed()
            self.notify(order)
            trade_id = existing.get("tradeOpenedID")
            if trade_id:
                self.trade_children[trade_id] = kids
        else:
            order.cancel()
            self.notify(order)
        self._record_order(order)

    def cancel(self, order: bt.Order) -> None:
        if not order.alive():
            return
        oanda_id = next((k for k, v in self.by_oanda.items() if v is order), None)
        if oanda_id is None:
            return
        try:
            self.client.request(orders_ep.OrderCancel(self.account, oanda_id))
        except NotFoundError:
            pass  # already filled or cancelled: the transactions will say which
        self.poll()

    # --- transactions -------------------------------------------------------------------------
    def poll(self) -> None:
        """Apply every account transaction since the last one seen."""
        body = self.client.request(transactions_ep.TransactionsSinceID(self.account, params={"id": self.last_txn}))
        before = self.last_txn
        for txn in body.get("transactions", []):
            self._apply(txn)
            self.last_txn = txn["id"]
        self._persist_txn(before)

    def _persist_txn(self, before: str) -> None:
        """Record the last transaction applied: a restart replays the account's history from there."""
        if self.last_txn != before and self.p.store is not None:
            self.p.store.note(last_transaction_id=self.last_txn)

    def poll_changes(self) -> None:
        """Transactions since the last one seen plus the account's NAV, in one request (once per bar)."""
        body = self.client.request(accounts_ep.AccountChanges(self.account,
                                                              params={"sinceTransactionID": self.last_txn}))
        before = self.last_txn
        for txn in body.get("changes", {}).get("transactions", []):
            if int(txn["id"]) > int(self.last_txn):
                self._apply(txn)
                self.last_txn = txn["id"]
        self._persist_txn(before)
        state = body.get("state", {})
        if "NAV" in state:
            self.value = float(state["NAV"])
        if "balance" in state:  # the simulator sends it; OANDA's fills carry accountBalance
            self.cash = float(state["balance"])

    def _apply(self, txn: dict) -> None:
        if "accountBalance" in txn:
            self.cash = float(txn["accountBalance"])
        kind = txn.get("type", "")
        if kind in ("LIMIT_ORDER", "STOP_ORDER", "MARKET_IF_TOUCHED_ORDER"):
            self.pending_entries[txn["id"]] = (txn["instrument"], float(txn["units"]))
        elif kind in ("ORDER_FILL", "ORDER_CANCEL"):
            self.pending_entries.pop(txn.get("orderID", ""), None)
        if kind in ("MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER") and txn.get("reason") == "CLIENT_ORDER":
            order = self.by_client.get((txn.get("clientExtensions") or {}).get("id", ""))
            if order is not None:
                self.by_oanda[txn["id"]] = order
                if order.status == bt.Order.Submitted:
                    order.accept(self)
                    self.notify(order)
                    for kid in self.children.get(order.ref, []):
                        kid.accept(self)
                        self.notify(kid)
        elif kind in _CHILD_KINDS and txn.get("reason") == "ON_FILL":
            want = _CHILD_KINDS[kind]
            for kid in self.trade_children.get(txn.get("tradeID", ""), []):
                if kid.exectype == want:
                    self.by_oanda[txn["id"]] = kid
        elif kind == "ORDER_FILL":
            self._on_fill(txn)
        elif kind == "DAILY_FINANCING":
            for p in txn.get("positionFinancings") or []:  # the open trade's share, booked when it closes
                self.held_financing[p["instrument"]] += float(p.get("financing", 0) or 0)
            if self.p.store is not None:
                # applied in order: the positions now are the ones held over the rollover
                self.p.store.insert_financing(financing_rows(txn, {k: p.size for k, p in self.positions.items()}))
        elif kind == "ORDER_CANCEL":
            order = self.by_oanda.get(txn.get("orderID", ""))
            if order is not None and order.alive():
                reason = txn.get("reason", "")
                if reason == "TIME_IN_FORCE_EXPIRED":  # OANDA's clock decides, not the bar's (Order.expire would)
                    order.status = bt.Order.Expired
                elif reason in ("CLIENT_REQUEST", "LINKED_TRADE_CLOSED"):
                    order.cancel()
                else:  # INSUFFICIENT_MARGIN, BOUNDS_VIOLATION, …: OANDA refused to fill it
                    log.error("OANDA cancelled order %s: %s", txn.get("orderID"), reason)
                    order.addinfo(reject_reason=reason)
                    order.reject(self)
                self.notify(order)
                self._record_order(order)
                for kid in self.children.get(order.ref, []):  # an entry that never filled takes its bracket
                    if kid.alive():
                        kid.cancel()
                        self.notify(kid)
                        self._record_order(kid)

    def _on_fill(self, txn: dict) -> None:
        instrument, units, price = txn["instrument"], float(txn["units"]), float(txn["price"])
        order = self.by_oanda.get(txn.get("orderID", ""))
        if order is None or not order.alive():
            # not ours (a kill-switch closeout, a manual trade, a crash survivor): the position still moves
            pos = self.positions[instrument]
            pos.update(units, price)
            if not pos.size:
                self.held_financing.pop(instrument, None)
            log.info("fill %s of %s %+g @ %g not from a live order of this run", txn["id"], instrument, units, price)
            self._track_trade(instrument, txn)
            self._record_fill(txn, None)
            return
        data = order.data
        pos = self.positions[instrument]
        old_price = pos.price
        psize, pprice, opened, closed = pos.update(units, price)
        comminfo = self.getcommissioninfo(data)
        closedvalue = comminfo.getoperationcost(closed, old_price) if closed else 0.0
        openedvalue = comminfo.getoperationcost(opened, price) if opened else 0.0
        # OANDA's own figures, in the account currency: the realised P&L of what the fill closed, and its
        # commission (split between the closed and the opened units as backtrader books it)
        pnl = fill_realised_pl(txn) if closed else 0.0
        commission = abs(float(txn.get("commission", 0) or 0))
        closedcomm = commission * abs(closed) / abs(units) if units else 0.0
        # financing: what the fill itself charged, plus the position's rollovers once the fill closes it
        financing = float(txn.get("financing", 0) or 0)
        if closed and (not psize or psize * closed > 0):  # flat, or reversed through flat
            financing += self.held_financing.pop(instrument, 0.0)
        order.comminfo = _BookedFill(comminfo, pnl, financing)  # the notification's clone keeps this fill's
        order.execute(data.datetime[0], units, price, closed, closedvalue, closedcomm, opened, openedvalue,
                      commission - closedcomm, 0.0, pnl, psize, pprice)
        order.addinfo(fill_txn=txn["id"], fill_time=txn["time"])
        order.completed() if not order.executed.remsize else order.partial()
        self.notify(order)
        self._track_trade(instrument, txn)
        opened_id = (txn.get("tradeOpened") or {}).get("tradeID")
        if opened_id and order.ref in self.children:
            self.trade_children[opened_id] = self.children[order.ref]
        self._record_order(order)
        self._record_fill(txn, order)

    def _track_trade(self, instrument: str, txn: dict) -> None:
        if not self.positions[instrument].size:
            self.trade_ids.pop(instrument, None)
        elif (txn.get("tradeOpened") or {}).get("tradeID") and instrument not in self.trade_ids:
            self.trade_ids[instrument] = txn["tradeOpened"]["tradeID"]
        elif (txn.get("tradeOpened") or {}).get("tradeID") and txn.get("tradesClosed"):
            self.trade_ids[instrument] = txn["tradeOpened"]["tradeID"]  # reversed through flat

    # --- continuous reconciliation --------------------------------------------------------------
    def check_drift(self, tolerance: float = 0.0) -> str | None:
        """Compare positions with the account's; a difference is a risk event and the broker's figure is
        adopted. → a description when some difference exceeds ``tolerance`` units (trading should stop)."""
        self.poll()
        body = self.client.request(accounts_ep.AccountDetails(self.account))
        if int(body["lastTransactionID"]) != int(self.last_txn):
            return None  # something happened in between: compare on a later bar
        broker: dict[str, tuple[float, float]] = {}
        for p in body["account"].get("positions", []):
            units = float(p["long"]["units"]) + float(p["short"]["units"])
            side = p["long"] if float(p["long"]["units"]) else p["short"]
            if units:
                broker[p["instrument"]] = (units, float(side.get("averagePrice", 0) or 0))
        worst, lines = 0.0, []
        for name in sorted(set(broker) | {k for k, v in self.positions.items() if v.size}):
            theirs = broker.get(name, (0.0, 0.0))
            ours = self.positions[name].size
            if theirs[0] != ours:
                worst = max(worst, abs(theirs[0] - ours))
                lines.append(f"{name}: runner {ours:+.0f}, broker {theirs[0]:+.0f}")
                self.positions[name] = bt.Position(theirs[0], theirs[1])  # the broker wins
        if not lines:
            return None
        text = "; ".join(lines)
        stop = worst > tolerance
        if self.p.risk is not None:
            self.p.risk.event("position_drift", None, f"{text} (tolerance {tolerance:g} units)",
                              "stop" if stop else "logged")
        return text if stop else None

    # --- kill switch --------------------------------------------------------------------------
    def flatten(self) -> None:
        """Cancel every pending order and close every position of the account, then read the result."""
        flatten_account(self.client, self.account)
        self.poll()
        self.refresh()

    # --- persistence hooks --------------------------------------------------------------------
    def _mid(self, instrument: str) -> float | None:
        hub = self.p.hub
        mid = hub.mid(instrument) if hub is not None else None
        if mid is None and instrument in self.datas and len(self.datas[instrument]):
            mid = self.datas[instrument].close[0]
        return mid

    def _record_order(self, order: bt.Order) -> None:
        store = self.p.store
        if store is None or order.p.simulated or "client_id" not in order.info:
            return
        parent = order.parent if order.parent is not None and order.parent is not order else None
        data = order.data
        now = bt.num2date(data.datetime[0]) if len(data) else None
        store.upsert_order({
            "order_ref": order.info.client_id, "client_order_id": order.info.client_id,
            "parent_ref": parent.info.client_id if parent is not None and "client_id" in parent.info else None,
            "instrument": data._name, "created_at": bt.num2date(order.created.dt) if order.created.dt else now,
            "side": "buy" if order.isbuy() else "sell",
            "order_type": _ORDER_TYPE_NAMES.get(order.exectype, str(order.exectype)),
            "size": abs(order.created.size), "price": order.created.price if order.exectype != bt.Order.Market else None,
            "status": order.getstatusname().lower(), "updated_at": now,
        })

    def _record_fill(self, txn: dict, order: bt.Order | None) -> None:
        if self.on_fill is not None:
            try:
                self.on_fill(txn)
            except Exception as exc:  # noqa: BLE001 - an alert must never stop trading
                log.error("fill callback failed: %s", exc)
        store = self.p.store
        if store is None:
            return
        ref = order.info.client_id if order is not None and "client_id" in order.info else \
            txn.get("clientOrderID") or f"oanda:{txn.get('orderID')}"
        store.insert_fill({"fill_id": int(txn["id"]), "order_ref": ref, "instrument": txn["instrument"],
                           "ts": pd.Timestamp(txn["time"]).to_pydatetime(), "size": float(txn["units"]),
                           "price": float(txn["price"]), "commission": float(txn.get("commission", 0) or 0)})


def flatten_account(client, account: str) -> list[dict]:
    """Cancel every pending entry order and close every position of ``account``. → positions left."""
    acct = client.request(accounts_ep.AccountDetails(account))["account"]
    for o in acct.get("orders", []):
        if o.get("type") in ("MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED"):
            try:
                client.request(orders_ep.OrderCancel(account, o["id"]))
            except NotFoundError:
                pass
    for attempt in range(3):
        for p in acct.get("positions", []):
            body = {f"{side}Units": "ALL" for side in ("long", "short") if float(p[side]["units"])}
            if not body:
                continue
            try:
                client.request(positions_ep.PositionClose(account, p["instrument"], data=body))
            except MbatsError as exc:  # e.g. a retried close whose first answer was lost: already flat
                log.warning("closing %s: %s; checking the account", p["instrument"], exc)
        acct = client.request(accounts_ep.AccountDetails(account))["account"]
        if not any(float(p["long"]["units"]) or float(p["short"]["units"]) for p in acct.get("positions", [])):
            break
    else:
        log.error("the account still holds positions after three closeouts: %s", acct.get("positions"))
    return [p for p in acct.get("positions", []) if float(p["long"]["units"]) or float(p["short"]["units"])]
