"""The simulated account: orders, trades, positions, transactions, balance, P&L and margin.

Rules (documented in :mod:`mbats.sim`): market orders fill at once at the current ask (buy) or
bid (sell) with unlimited liquidity; units against an open position close trades first-in
first-out (a netting account, like OANDA's default); LIMIT and STOP orders and the TP / SL /
trailing-SL orders on trades are checked against each bar as it completes: a stop beyond the
bar's open fills at the open (gap), otherwise at its price; when SL and TP both fall inside one
bar, the stop loss is assumed to come first. P&L is converted to the home currency at the
current mid. Financing is OANDA's daily rollover (:mod:`mbats.secmaster.financing`): at 17:00 New
York every trade opened before it is charged or paid |units| x mid x annual rate x days / 365
(Wednesday three days), converted at the current mid, in a DAILY_FINANCING transaction. Margin per
trade is |units| x mid x the larger of the account's and the instrument's margin rate; when the NAV
falls to half the margin used, every open trade is closed (MARKET_ORDER reason MARGIN_CLOSEOUT).
Commissions and guaranteed stops are left out (always 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mbats.kernel.fx import realised_pl
from mbats.secmaster.financing import FinancingTerms, simulator_terms
from mbats.sim.market import Market, fmt_time

ENTRY_TYPES = ("MARKET", "LIMIT", "STOP")
DEPENDENT_TYPES = {"takeProfitOnFill": "TAKE_PROFIT", "stopLossOnFill": "STOP_LOSS",
                   "trailingStopLossOnFill": "TRAILING_STOP_LOSS"}


class OrderError(Exception):
    """A request OANDA would reject: HTTP status, errorCode and errorMessage."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def money(x: float) -> str:
    return f"{x:.4f}"


@dataclass
class Order:
    id: str
    type: str
    instrument: str
    create_time: int
    units: float = 0.0
    price: float | None = None
    distance: float | None = None
    time_in_force: str = "GTC"
    gtd_time: int | None = None
    position_fill: str = "DEFAULT"
    trade_id: str | None = None  # dependent orders: the trade they protect
    on_fill: dict = field(default_factory=dict)  # takeProfitOnFill … as sent
    client_extensions: dict | None = None
    trade_client_extensions: dict | None = None
    price_bound: float | None = None
    state: str = "PENDING"
    trailing_stop_value: float | None = None
    filling_transaction_id: str | None = None
    filled_time: int | None = None
    trade_opened_id: str | None = None
    trade_closed_ids: list[str] = field(default_factory=list)
    cancelling_transaction_id: str | None = None
    cancelled_time: int | None = None

    def to_json(self, digits: int) -> dict:
        out = {"id": self.id, "createTime": fmt_time(self.create_time), "type": self.type, "state": self.state,
               "timeInForce": self.time_in_force}
        if self.type in ENTRY_TYPES:
            out.update(instrument=self.instrument, units=f"{self.units:.0f}", positionFill=self.position_fill)
            out.update({k: _dependent_json(v, digits) for k, v in self.on_fill.items()})
            if self.trade_client_extensions:
                out["tradeClientExtensions"] = self.trade_client_extensions
        else:
            out["tradeID"] = self.trade_id
        if self.price is not None:
            out["price"] = f"{self.price:.{digits}f}"
        if self.distance is not None:
            out["distance"] = f"{self.distance:.{digits}f}"
        if self.trailing_stop_value is not None:
            out["trailingStopValue"] = f"{self.trailing_stop_value:.{digits}f}"
        if self.gtd_time is not None:
            out["gtdTime"] = fmt_time(self.gtd_time)
        if self.client_extensions:
            out["clientExtensions"] = self.client_extensions
        if self.state == "FILLED":
            out.update(fillingTransactionID=self.filling_transaction_id, filledTime=fmt_time(self.filled_time))
            if self.trade_opened_id:
                out["tradeOpenedID"] = self.trade_opened_id
            if self.trade_closed_ids:
                out["tradeClosedIDs"] = self.trade_closed_ids
        if self.state == "CANCELLED":
            out.update(cancellingTransactionID=self.cancelling_transaction_id,
                       cancelledTime=fmt_time(self.cancelled_time))
        return out


def _dependent_json(spec: dict, digits: int) -> dict:
    return {k: (f"{float(v):.{digits}f}" if k in ("price", "distance") else v) for k, v in spec.items()}


@dataclass
class Trade:
    id: str
    instrument: str
    price: float
    open_time: int
    initial_units: float
    current_units: float
    open_transaction_id: str
    client_extensions: dict | None = None
    realized_pl: float = 0.0
    state: str = "OPEN"
    close_time: int | None = None
    close_price_sum: float = 0.0  # units-weighted, for averageClosePrice
    closing_transaction_ids: list[str] = field(default_factory=list)
    dependents: dict[str, str] = field(default_factory=dict)  # order type → order id
    financing: float = 0.0  # home currency, paid (< 0) or received over its life


class Account:
    """One OANDA-style account trading on a :class:`Market`."""

    def __init__(self, market: Market, account_id: str, balance: float = 100_000.0, currency: str = "USD",
                 margin_rate: float = 0.02, alias: str = "MBATS simulator",
                 terms: dict[str, FinancingTerms] | None = None):
        self.market = market
        self.id, self.currency, self.margin_rate, self.alias = account_id, currency, margin_rate, alias
        # financing and margin terms per instrument (the illustrative table unless given)
        self.terms = {**simulator_terms(market.series, margin_rate), **{k.upper(): v for k, v in (terms or {}).items()}}
        self.balance = 0.0
        self.realized_pl = 0.0
        self.financing = 0.0
        self.closeouts = 0
        self.orders: dict[str, Order] = {}
        self.trades: dict[str, Trade] = {}
        self.transactions: list[dict] = []
        self.created_time = market.now
        self._txn(type="CREATE", divisionID=1, siteID=1, homeCurrency=currency, accountNumber=1)
        self.balance = balance
        self._txn(type="TRANSFER_FUNDS", amount=money(balance), fundingReason="ADJUSTMENT", accountBalance=money(balance))

    # --- bookkeeping ----------------------------------------------------------------------
    @property
    def last_transaction_id(self) -> str:
        return self.transactions[-1]["id"]

    def _next_id(self) -> str:
        return str(len(self.transactions) + 1)

    def _txn(self, **fields) -> dict:
        txn = {"id": self._next_id(), "time": fmt_time(fields.pop("time", self.market.now)), "accountID": self.id,
               "userID": 1, "batchID": fields.pop("batchID", None) or self._next_id(), **fields}
        self.transactions.append(txn)
        return txn

    def digits(self, instrument: str) -> int:
        return self.market.instrument(instrument).instrument.display_precision or 5

    def home_rate(self, instrument: str) -> float:
        """Home-currency units per unit of ``instrument``'s quote currency now (the conversion pair's mid)."""
        quote = self.market.instrument(instrument).instrument.quote_currency
        rate = self.market.rate(quote, self.currency)
        if rate is None:
            raise OrderError(400, "INSTRUMENT_NOT_TRADEABLE", f"no {quote}/{self.currency} price to value {instrument}")
        return rate

    def to_home(self, instrument: str, amount_in_quote: float) -> float:
        return amount_in_quote * self.home_rate(instrument)

    # --- valuation ------------------------------------------------------------------------
    def unrealized(self, trade: Trade) -> float:
        bid, ask, _ = self.market.quote(trade.instrument)
        exit_price = bid if trade.current_units > 0 else ask
        return self.to_home(trade.instrument, trade.current_units * (exit_price - trade.price))

    def margin_rate_of(self, instrument: str) -> float:
        """OANDA applies the larger of the account's and the instrument's margin rate."""
        return max(self.margin_rate, self.terms[instrument.upper()].margin_rate)

    def margin(self, trade: Trade) -> float:
        mid, _ = self.market.mid(trade.instrument)
        return self.to_home(trade.instrument, abs(trade.current_units) * mid) * self.margin_rate_of(trade.instrument)

    def open_trades(self, instrument: str | None = None) -> list[Trade]:
        return [t for t in self.trades.values() if t.state == "OPEN" and (instrument is None or t.instrument == instrument)]

    def summary(self) -> dict:
        trades = self.open_trades()
        upl = sum(self.unrealized(t) for t in trades)
        margin_used = sum(self.margin(t) for t in trades)
        position_value = sum(self.margin(t) / self.margin_rate_of(t.instrument) for t in trades)
        nav = self.balance + upl
        return {
            "id": self.id, "alias": self.alias, "currency": self.currency, "balance": money(self.balance),
            "createdByUserID": 1, "createdTime": fmt_time(self.created_time), "guaranteedStopLossOrderMode": "DISABLED",
            "pl": money(self.realized_pl), "resettablePL": money(self.realized_pl), "resettablePLTime": "0",
            "financing": money(self.financing), "commission": money(0), "dividendAdjustment": money(0),
            "guaranteedExecutionFees": money(0), "marginRate": f"{self.margin_rate:g}",
            "openTradeCount": len(trades), "openPositionCount": len({t.instrument for t in trades}),
            "pendingOrderCount": sum(o.state == "PENDING" for o in self.orders.values()),
            "hedgingEnabled": False, "unrealizedPL": money(upl), "NAV": money(nav), "marginUsed": money(margin_used),
            "marginAvailable": money(max(nav - margin_used, 0.0)), "positionValue": money(position_value),
            "marginCloseoutUnrealizedPL": money(upl), "marginCloseoutNAV": money(nav),
            "marginCloseoutMarginUsed": money(margin_used),
            "marginCloseoutPercent": f"{(margin_used / 2 / nav) if nav > 0 else 0:.5f}",
            "marginCloseoutPositionValue": money(position_value), "withdrawalLimit": money(max(nav - margin_used, 0.0)),
            "marginCallMarginUsed": money(margin_used), "marginCallPercent": f"{(margin_used / nav) if nav > 0 else 0:.5f}",
            "lastTransactionID": self.last_transaction_id,
        }

    def trade_json(self, t: Trade) -> dict:
        d = self.digits(t.instrument)
        out = {"id": t.id, "instrument": t.instrument, "price": f"{t.price:.{d}f}", "openTime": fmt_time(t.open_time),
               "initialUnits": f"{t.initial_units:.0f}", "initialMarginRequired": money(0),
               "state": t.state, "currentUnits": f"{t.current_units:.0f}", "realizedPL": money(t.realized_pl),
               "financing": money(t.financing), "dividendAdjustment": money(0)}
        if t.state == "OPEN":
            out.update(unrealizedPL=money(self.unrealized(t)), marginUsed=money(self.margin(t)))
        else:
            closed_units = abs(t.initial_units)
            out.update(closeTime=fmt_time(t.close_time), closingTransactionIDs=t.closing_transaction_ids,
                       averageClosePrice=f"{t.close_price_sum / closed_units:.{d}f}" if closed_units else None)
        if t.client_extensions:
            out["clientExtensions"] = t.client_extensions
        for kind, key in (("TAKE_PROFIT", "takeProfitOrder"), ("STOP_LOSS", "stopLossOrder"),
                          ("TRAILING_STOP_LOSS", "trailingStopLossOrder")):
            if kind in t.dependents:
                out[key] = self.orders[t.dependents[kind]].to_json(d)
        return out

    def positions(self, instrument: str | None = None) -> list[dict]:
        names = sorted({t.instrument for t in self.trades.values()} | ({instrument} if instrument else set()))
        out = []
        for name in names:
            if instrument and name != instrument:
                continue
            out.append(self._position(name))
        return out

    def _position(self, name: str) -> dict:
        d = self.digits(name)

        def side(trades: list[Trade], realized: float) -> dict:
            units = sum(t.current_units for t in trades)
            avg = sum(t.current_units * t.price for t in trades) / units if units else 0.0
            upl = sum(self.unrealized(t) for t in trades)
            res = {"units": f"{units:.0f}", "pl": money(realized), "resettablePL": money(realized),
                   "unrealizedPL": money(upl), "financing": money(sum(t.financing for t in trades)),
                   "tradeIDs": [t.id for t in trades]}
            if units:
                res["averagePrice"] = f"{avg:.{d}f}"
            return res

        every = [t for t in self.trades.values() if t.instrument == name]
        longs = [t for t in self.open_trades(name) if t.current_units > 0]
        shorts = [t for t in self.open_trades(name) if t.current_units < 0]
        long_pl = sum(t.realized_pl for t in every if t.initial_units > 0)
        short_pl = sum(t.realized_pl for t in every if t.initial_units < 0)
        upl = sum(self.unrealized(t) for t in longs + shorts)
        return {"instrument": name, "long": side(longs, long_pl), "short": side(shorts, short_pl),
                "pl": money(long_pl + short_pl), "resettablePL": money(long_pl + short_pl), "unrealizedPL": money(upl),
                "marginUsed": money(sum(self.margin(t) for t in longs + shorts)),
                "financing": money(sum(t.financing for t in every)),
                "commission": money(0)}

    # --- orders ---------------------------------------------------------------------------
    def create_order(self, spec: dict) -> dict:
        """POST /orders body ``{"order": {...}}`` → the transactions OANDA would answer with."""
        if not isinstance(spec, dict) or not isinstance(spec.get("order"), dict):
            raise OrderError(400, "INVALID_REQUEST", "Invalid value specified for 'order'")
        body = spec["order"]
        kind = str(body.get("type", "MARKET")).upper()
        if kind not in ENTRY_TYPES:
            raise OrderError(400, "ORDER_TYPE_NOT_SUPPORTED", f"Order type {kind} is not supported by the simulator")
        instrument = str(body.get("instrument", "")).upper()
        if instrument not in self.market.series:
            raise OrderError(400, "INSTRUMENT_NOT_TRADEABLE", f"Invalid value specified for 'instrument': {instrument!r}")
        units = _number(body.get("units"), "units")
        if units == 0 or units != int(units):
            raise OrderError(400, "UNITS_INVALID", "Order units must be a non-zero whole number")
        tif = str(body.get("timeInForce", "FOK" if kind == "MARKET" else "GTC")).upper()
        if kind == "MARKET" and tif not in ("FOK", "IOC"):
            raise OrderError(400, "TIME_IN_FORCE_INVALID", "Market orders take timeInForce FOK or IOC")
        price = _number(body.get("price"), "price") if kind != "MARKET" else None
        order = Order(
            id=self._next_id(), type=kind, instrument=instrument, create_time=self.market.now, units=units,
            price=price, time_in_force=tif, position_fill=str(body.get("positionFill", "DEFAULT")).upper(),
            gtd_time=_time(body.get("gtdTime")) if tif == "GTD" else None,
            on_fill={k: body[k] for k in DEPENDENT_TYPES if isinstance(body.get(k), dict)},
            client_extensions=body.get("clientExtensions"), trade_client_extensions=body.get("tradeClientExtensions"),
            price_bound=_number(body["priceBound"], "priceBound") if body.get("priceBound") else None,
        )
        for key, dep in order.on_fill.items():
            if "price" not in dep and "distance" not in dep:
                raise OrderError(400, "INVALID_REQUEST", f"{key} needs a price or a distance")
        cid = (order.client_extensions or {}).get("id")
        if cid and any(o.state == "PENDING" and (o.client_extensions or {}).get("id") == cid
                       for o in self.orders.values()):
            # OANDA's client ids are unique among *pending* orders only: a filled one can be reused
            raise OrderError(400, "CLIENT_ORDER_ID_ALREADY_EXISTS", f"A pending order with client id {cid} exists")
        return self._submit(order, reason="CLIENT_ORDER")

    def margin_ok(self, order: Order) -> bool:
        """Would filling ``order`` keep the margin used within the NAV? (closing units free margin)"""
        if order.position_fill == "REDUCE_ONLY":
            return True
        opposite = sum(abs(t.current_units) for t in self.open_trades(order.instrument)
                       if t.current_units * order.units < 0)
        opened = max(0.0, abs(order.units) - opposite)
        if opened == 0:
            return True
        mid, _ = self.market.mid(order.instrument)
        per_unit = self.to_home(order.instrument, mid) * self.margin_rate_of(order.instrument)
        trades = self.open_trades()
        used = sum(self.margin(t) for t in trades) - min(abs(order.units), opposite) * per_unit
        nav = self.balance + sum(self.unrealized(t) for t in trades)
        return used + opened * per_unit <= nav

    def _submit(self, order: Order, reason: str, extra: dict | None = None) -> dict:
        d = self.digits(order.instrument)
        create = self._txn(type=f"{order.type}_ORDER", reason=reason, **{k: v for k, v in order.to_json(d).items()
                                                                       if k not in ("id", "type", "createTime", "state")},
                           **(extra or {}))
        order.id = create["id"]
        self.orders[order.id] = order
        response = {"orderCreateTransaction": create, "relatedTransactionIDs": [create["id"]]}
        bid, ask, _ = self.market.quote(order.instrument)
        market_price = ask if order.units > 0 else bid
        if order.type == "MARKET":
            if order.price_bound is not None and (market_price - order.price_bound) * order.units > 0:
                response.update(self._cancel(order, "BOUNDS_VIOLATION", create["id"]))
            elif not self.margin_ok(order):  # OANDA: created, then cancelled for want of margin
                response.update(self._cancel(order, "INSUFFICIENT_MARGIN", create["id"]))
            else:
                response.update(self._fill(order, market_price, self.market.now, "MARKET_ORDER", create["id"]))
        elif (order.type == "LIMIT" and (market_price - order.price) * order.units <= 0) or \
                (order.type == "STOP" and (market_price - order.price) * order.units >= 0):
            # marketable on arrival: fills now at the market price, as OANDA does
            if not self.margin_ok(order):
                response.update(self._cancel(order, "INSUFFICIENT_MARGIN", create["id"]))
            else:
                response.update(self._fill(order, market_price, self.market.now, f"{order.type}_ORDER", create["id"]))
        response["relatedTransactionIDs"] = [t["id"] for t in self.transactions if t["batchID"] == create["id"]]
        response["lastTransactionID"] = self.last_transaction_id
        return response

    def _cancel(self, order: Order, reason: str, batch: str | None = None) -> dict:
        txn = self._txn(type="ORDER_CANCEL", orderID=order.id, reason=reason, batchID=batch)
        if order.client_extensions and "id" in order.client_extensions:
            txn["clientOrderID"] = order.client_extensions["id"]
        order.state, order.cancelling_transaction_id, order.cancelled_time = "CANCELLED", txn["id"], self.market.now
        return {"orderCancelTransaction": txn}

    def cancel_order(self, specifier: str) -> dict:
        order = self.find_order(specifier)
        if order.state != "PENDING":
            raise OrderError(404, "ORDER_DOESNT_EXIST", "The Order specified does not exist or is not pending")
        out = self._cancel(order, "CLIENT_REQUEST")
        if order.trade_id and order.trade_id in self.trades:
            self.trades[order.trade_id].dependents.pop(order.type, None)
        out.update(relatedTransactionIDs=[out["orderCancelTransaction"]["id"]], lastTransactionID=self.last_transaction_id)
        return out

    def find_order(self, specifier: str) -> Order:
        if specifier.startswith("@"):
            for o in self.orders.values():
                if (o.client_extensions or {}).get("id") == specifier[1:]:
                    return o
        elif specifier in self.orders:
            return self.orders[specifier]
        raise OrderError(404, "ORDER_DOESNT_EXIST", "The Order specified does not exist")

    def find_trade(self, specifier: str) -> Trade:
        if specifier.startswith("@"):
            for t in self.trades.values():
                if (t.client_extensions or {}).get("id") == specifier[1:]:
                    return t
        elif specifier in self.trades:
            return self.trades[specifier]
        raise OrderError(404, "TRADE_DOESNT_EXIST", "The Trade specified does not exist")

    def _fill(self, order: Order, price: float, time: int, reason: str, batch: str,
              only_trade: Trade | None = None) -> dict:
        """Fill ``order`` at ``price``: reduce opposite trades FIFO, then open a trade with the rest."""
        d = self.digits(order.instrument)
        remaining = order.units
        closed, reduced, pl_total = [], None, 0.0
        candidates = [only_trade] if only_trade else [
            t for t in self.open_trades(order.instrument) if t.current_units * remaining < 0]
        if order.position_fill != "OPEN_ONLY":
            for trade in candidates:
                if remaining == 0:
                    break
                take = min(abs(remaining), abs(trade.current_units))
                closing_units = -take if trade.current_units > 0 else take  # signed like the fill
                # OANDA: (exit - entry fill price) x units, converted at the close's rate (one rule with backtests)
                pl = realised_pl(-closing_units, trade.price, price, self.home_rate(order.instrument))
                trade.current_units += closing_units
                trade.realized_pl += pl
                trade.close_price_sum += take * price
                pl_total += pl
                remaining -= closing_units
                entry = {"tradeID": trade.id, "units": f"{closing_units:.0f}", "price": f"{price:.{d}f}",
                         "realizedPL": money(pl), "financing": money(0), "halfSpreadCost": money(0)}
                if trade.current_units == 0:
                    trade.state, trade.close_time = "CLOSED", time
                    closed.append((trade, entry))
                else:
                    reduced = (trade, entry)
        opened = None
        if remaining != 0 and order.position_fill != "REDUCE_ONLY" and only_trade is None:
            opened = remaining
        self.balance += pl_total
        self.realized_pl += pl_total
        bid, ask, _ = self.market.quote(order.instrument)
        fill = self._txn(
            type="ORDER_FILL", orderID=order.id, instrument=order.instrument, units=f"{order.units - remaining + (opened or 0):.0f}",
            price=f"{price:.{d}f}", fullVWAP=f"{price:.{d}f}", reason=reason, pl=money(pl_total), financing=money(0),
            commission=money(0), guaranteedExecutionFee=money(0), accountBalance=money(self.balance),
            halfSpreadCost=money(0), batchID=batch, time=time,
            fullPrice={"type": "PRICE", "bids": [{"price": f"{bid:.{d}f}", "liquidity": "10000000"}],
                       "asks": [{"price": f"{ask:.{d}f}", "liquidity": "10000000"}],
                       "closeoutBid": f"{bid:.{d}f}", "closeoutAsk": f"{ask:.{d}f}"},
        )
        if order.client_extensions and "id" in order.client_extensions:
            fill["clientOrderID"] = order.client_extensions["id"]
        order.state, order.filling_transaction_id, order.filled_time = "FILLED", fill["id"], time
        if closed:
            fill["tradesClosed"] = [e for _, e in closed]
            order.trade_closed_ids = [t.id for t, _ in closed]
        if reduced:
            fill["tradeReduced"] = reduced[1]
        for trade, entry in closed:
            trade.closing_transaction_ids.append(fill["id"])
            for kind, dep_id in list(trade.dependents.items()):
                dep = self.orders[dep_id]
                if dep.state == "PENDING" and dep.id != order.id:
                    self._cancel(dep, "LINKED_TRADE_CLOSED", batch)
        if reduced:
            reduced[0].closing_transaction_ids.append(fill["id"])
        if opened:
            trade = Trade(id=fill["id"], instrument=order.instrument, price=price, open_time=time,
                          initial_units=opened, current_units=opened, open_transaction_id=fill["id"],
                          client_extensions=order.trade_client_extensions)
            self.trades[trade.id] = trade
            order.trade_opened_id = trade.id
            fill["tradeOpened"] = {"tradeID": trade.id, "units": f"{opened:.0f}", "price": f"{price:.{d}f}",
                                   "guaranteedExecutionFee": money(0), "halfSpreadCost": money(0),
                                   "initialMarginRequired": money(self.margin(trade))}
            if order.trade_client_extensions:
                fill["tradeOpened"]["clientExtensions"] = order.trade_client_extensions
            self._attach_dependents(order, trade, price, batch)
        return {"orderFillTransaction": fill}

    def _attach_dependents(self, order: Order, trade: Trade, fill_price: float, batch: str) -> None:
        d = self.digits(trade.instrument)
        for key, kind in DEPENDENT_TYPES.items():
            spec = order.on_fill.get(key)
            if not spec:
                continue
            direction = 1 if trade.current_units > 0 else -1
            distance = float(spec["distance"]) if "distance" in spec else None
            if kind == "TRAILING_STOP_LOSS":
                price = None
                trailing = round(fill_price - direction * distance, d)
            else:
                price = float(spec["price"]) if "price" in spec else round(
                    fill_price + (-1 if kind == "STOP_LOSS" else 1) * direction * distance, d)
                trailing = None
            dep = Order(id="", type=kind, instrument=trade.instrument, create_time=self.market.now, price=price,
                        distance=distance if kind == "TRAILING_STOP_LOSS" else None, trade_id=trade.id,
                        time_in_force=str(spec.get("timeInForce", "GTC")), client_extensions=spec.get("clientExtensions"),
                        trailing_stop_value=trailing)
            txn = self._txn(type=f"{kind}_ORDER", tradeID=trade.id, reason="ON_FILL", batchID=batch,
                            timeInForce=dep.time_in_force, triggerCondition="DEFAULT",
                            **({"price": f"{price:.{d}f}"} if price is not None else {"distance": f"{distance:.{d}f}"}))
            dep.id = txn["id"]
            self.orders[dep.id] = dep
            trade.dependents[kind] = dep.id

    def close_trade(self, specifier: str, units: str = "ALL") -> dict:
        trade = self.find_trade(specifier)
        if trade.state != "OPEN":
            raise OrderError(404, "TRADE_DOESNT_EXIST", "The Trade specified is not open")
        size = abs(trade.current_units) if str(units).upper() == "ALL" else _number(units, "units")
        if size <= 0 or size > abs(trade.current_units):
            raise OrderError(400, "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE", "Invalid value specified for 'units'")
        signed = -size if trade.current_units > 0 else size
        order = Order(id="", type="MARKET", instrument=trade.instrument, create_time=self.market.now,
                      units=signed, time_in_force="FOK", position_fill="REDUCE_ONLY")
        return self._market_close(order, "TRADE_CLOSE", {"tradeClose": {"tradeID": trade.id, "units": str(units)}},
                                  only_trade=trade)

    def close_position(self, instrument: str, body: dict) -> dict:
        instrument = instrument.upper()
        if instrument not in self.market.series:
            raise OrderError(400, "INSTRUMENT_NOT_TRADEABLE", f"Invalid value specified for 'instrument': {instrument!r}")
        out: dict = {"relatedTransactionIDs": []}
        asked = False
        for side, sign in (("long", 1), ("short", -1)):
            want = str(body.get(f"{side}Units", "NONE")).upper()
            if want == "NONE":
                continue
            asked = True
            trades = [t for t in self.open_trades(instrument) if t.current_units * sign > 0]
            held = abs(sum(t.current_units for t in trades))
            size = held if want == "ALL" else _number(want, f"{side}Units")
            if held == 0 or size > held:
                raise OrderError(400, "CLOSEOUT_POSITION_DOESNT_EXIST", f"The Position requested to be closed out does not exist ({side})")
            order = Order(id="", type="MARKET", instrument=instrument, create_time=self.market.now,
                          units=-sign * size, time_in_force="FOK", position_fill="REDUCE_ONLY")
            result = self._market_close(order, "POSITION_CLOSEOUT",
                                        {f"{side}PositionCloseout": {"instrument": instrument, "units": want}})
            out[f"{side}OrderCreateTransaction"] = result["orderCreateTransaction"]
            out[f"{side}OrderFillTransaction"] = result["orderFillTransaction"]
            out["relatedTransactionIDs"] += result["relatedTransactionIDs"]
        if not asked:
            raise OrderError(400, "INVALID_REQUEST", "Specify longUnits and/or shortUnits")
        out["lastTransactionID"] = self.last_transaction_id
        return out

    def _market_close(self, order: Order, reason: str, extra: dict, only_trade: Trade | None = None) -> dict:
        create = self._txn(type="MARKET_ORDER", reason=reason, instrument=order.instrument, units=f"{order.units:.0f}",
                           timeInForce="FOK", positionFill="REDUCE_ONLY", **extra)
        order.id = create["id"]
        self.orders[order.id] = order
        bid, ask, _ = self.market.quote(order.instrument)
        fill = self._fill(order, ask if order.units > 0 else bid, self.market.now, "MARKET_ORDER_" + reason,
                          create["id"], only_trade=only_trade)
        return {"orderCreateTransaction": create, **fill,
                "relatedTransactionIDs": [t["id"] for t in self.transactions if t["batchID"] == create["id"]],
                "lastTransactionID": self.last_transaction_id}

    # --- financing and margin closeout -------------------------------------------------------
    def rollover(self, when: int, weekday: int) -> dict | None:
        """OANDA's daily financing at ``when`` (17:00 New York, ``weekday`` 0 = Monday).

        Every trade opened before ``when`` pays or earns |units| x current mid x its side's annual
        rate x the days charged that weekday / 365, converted into the home currency at the current
        mid; one DAILY_FINANCING transaction carries the total, per position and per trade.
        """
        per_instrument: dict[str, list[tuple[Trade, float]]] = {}
        for trade in self.open_trades():
            terms = self.terms[trade.instrument]
            if trade.open_time >= when or terms.days_on(weekday) == 0:
                continue
            mid, _ = self.market.mid(trade.instrument)
            quote = terms.charge(trade.current_units, mid, weekday)
            amount = self.to_home(trade.instrument, quote)
            per_instrument.setdefault(trade.instrument, []).append((trade, amount, quote,
                                                                    terms.rate_for(trade.current_units)))
        if not per_instrument:
            return None
        total, positions = 0.0, []
        for name, rows in sorted(per_instrument.items()):
            for trade, amount, _, _ in rows:
                trade.financing += amount
            subtotal = sum(r[1] for r in rows)
            total += subtotal
            # OANDA's PositionFinancing / OpenTradeFinancing fields (quote-currency amount, the trade's rate)
            positions.append({"instrument": name, "financing": money(subtotal),
                              "quoteFinancing": money(sum(r[2] for r in rows)),
                              "openTradeFinancings": [{"tradeID": t.id, "financing": money(a), "quoteFinancing": money(q),
                                                       "financingRate": f"{rate:.4f}"} for t, a, q, rate in rows]})
        self.balance += total
        self.financing += total
        return self._txn(type="DAILY_FINANCING", financing=money(total), accountBalance=money(self.balance),
                         accountFinancingMode="DAILY", positionFinancings=positions, time=when)

    def closeout_due(self) -> bool:
        """OANDA closes everything out once the NAV is at or below half the margin used."""
        trades = self.open_trades()
        if not trades:
            return False
        try:
            used = sum(self.margin(t) for t in trades)
        except OrderError:  # a cross with no home-currency pair replayed cannot be valued
            return False
        nav = self.balance + sum(self.unrealized(t) for t in trades)
        return nav <= used / 2

    def margin_closeout(self) -> None:
        """Close every open position at the current price (MARKET_ORDER, reason MARGIN_CLOSEOUT)."""
        self.closeouts += 1
        for name in sorted({t.instrument for t in self.open_trades()}):
            units = sum(t.current_units for t in self.open_trades(name))
            order = Order(id="", type="MARKET", instrument=name, create_time=self.market.now, units=-units,
                          time_in_force="FOK", position_fill="REDUCE_ONLY")
            self._market_close(order, "MARGIN_CLOSEOUT", {"marginCloseout": {"reason": "MARGIN_CHECK_VIOLATION"}})

    # --- replay ---------------------------------------------------------------------------
    def on_bar(self, symbol: str, i: int) -> None:
        """Check pending orders and open trades of ``symbol`` against its completed bar ``i``."""
        s = self.market.instrument(symbol)
        t_open, t_end = int(s.times[i]), int(s.times[i] + self.market.step)
        hs = self.market.half_spread(symbol)
        d = self.digits(symbol)
        mid = (s.open[i], s.high[i], s.low[i], s.close[i])
        bid = tuple(round(x - hs, d) for x in mid)
        ask = tuple(round(x + hs, d) for x in mid)
        for order in [o for o in self.orders.values() if o.state == "PENDING" and o.instrument == symbol]:
            if order.gtd_time is not None and order.gtd_time <= t_end:
                self._cancel(order, "TIME_IN_FORCE_EXPIRED")
            elif order.type in ("LIMIT", "STOP") and order.create_time <= t_open:
                self._try_entry(order, bid, ask, t_end)
        for trade in self.open_trades(symbol):
            if trade.open_time <= t_open:
                self._check_exits(trade, bid, ask, t_end)

    def _try_entry(self, order: Order, bid, ask, t_end: int) -> None:
        o, h, low, _ = ask if order.units > 0 else bid
        p = order.price
        buy = order.units > 0
        if order.type == "LIMIT":
            hit = low <= p if buy else h >= p
            price = min(p, o) if buy else max(p, o)
        else:
            hit = h >= p if buy else low <= p
            price = max(p, o) if buy else min(p, o)
        if hit and not self.margin_ok(order):
            self._cancel(order, "INSUFFICIENT_MARGIN")
        elif hit:
            self._fill(order, price, t_end, f"{order.type}_ORDER", self._next_id())

    def _check_exits(self, trade: Trade, bid, ask, t_end: int) -> None:
        long = trade.current_units > 0
        o, h, low, _ = bid if long else ask
        worse = (lambda a, b: a <= b) if long else (lambda a, b: a >= b)  # price a at/through stop b
        stops = [self.orders[trade.dependents[k]] for k in ("STOP_LOSS", "TRAILING_STOP_LOSS") if k in trade.dependents]
        tp = self.orders[trade.dependents["TAKE_PROFIT"]] if "TAKE_PROFIT" in trade.dependents else None
        levels = [(x, x.price if x.type == "STOP_LOSS" else x.trailing_stop_value) for x in stops]
        extreme_bad, extreme_good = (low, h) if long else (h, low)
        hit = None
        for order, level in levels:  # gap through the stop at the open
            if worse(o, level):
                hit = (order, o)
                break
        if hit is None and tp is not None and (o - tp.price) * (1 if long else -1) >= 0:
            hit = (tp, o)  # opened at or beyond the take profit
        if hit is None:
            for order, level in levels:  # stop before target when both are inside the bar
                if worse(extreme_bad, level):
                    hit = (order, level)
                    break
        if hit is None and tp is not None and (extreme_good - tp.price) * (1 if long else -1) >= 0:
            hit = (tp, tp.price)
        if hit is not None:
            order, price = hit
            order.units = -trade.current_units
            self._fill(order, price, t_end, order.type + "_ORDER", self._next_id(), only_trade=trade)
            return
        for order, _ in levels:  # trail after the bar, never loosen
            if order.type == "TRAILING_STOP_LOSS":
                d = self.digits(trade.instrument)
                candidate = round(extreme_good - order.distance if long else extreme_good + order.distance, d)
                if (candidate - order.trailing_stop_value) * (1 if long else -1) > 0:
                    order.trailing_stop_value = candidate

    # --- changes --------------------------------------------------------------------------
    def changes_since(self, since: int) -> dict:
        def after(tid: str | None) -> bool:
            return tid is not None and int(tid) > since

        orders = list(self.orders.values())
        trades = list(self.trades.values())
        return {
            "ordersCreated": [o.to_json(self.digits(o.instrument)) for o in orders if after(o.id)],
            "ordersCancelled": [o.to_json(self.digits(o.instrument)) for o in orders if after(o.cancelling_transaction_id)],
            "ordersFilled": [o.to_json(self.digits(o.instrument)) for o in orders if after(o.filling_transaction_id)],
            "ordersTriggered": [],
            "tradesOpened": [self.trade_json(t) for t in trades if after(t.open_transaction_id)],
            "tradesReduced": [self.trade_json(t) for t in trades if t.state == "OPEN" and any(after(x) for x in t.closing_transaction_ids)],
            "tradesClosed": [self.trade_json(t) for t in trades if t.state == "CLOSED" and any(after(x) for x in t.closing_transaction_ids)],
            "positions": self.positions(),
            "transactions": [t for t in self.transactions if int(t["id"]) > since],
        }


def _number(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise OrderError(400, "INVALID_REQUEST", f"Invalid value specified for '{name}'") from None
    if out != out:
        raise OrderError(400, "INVALID_REQUEST", f"Invalid value specified for '{name}'")
    return out


def _time(value) -> int | None:
    from mbats.sim.market import parse_time

    if value is None:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        raise OrderError(400, "INVALID_REQUEST", "Invalid value specified for 'gtdTime'") from None
