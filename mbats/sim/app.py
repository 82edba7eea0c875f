"""The FastAPI app speaking the OANDA v20 REST protocol (the part MBATS uses) over a :class:`Simulator`."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import fields

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mbats.secmaster.granularity import GRANULARITIES
from mbats.sim.broker import OrderError
from mbats.sim.faults import Fault
from mbats.sim.market import fmt_time, parse_time
from mbats.sim.simulator import Simulator
from mbats.sim.validation import (BadRequest, OrderRejected, check_candles_query, check_order,
                                  check_position_close, int_param, reject_body)

MAX_COUNT = 5000
PRICE_KEYS = {"M": "mid", "B": "bid", "A": "ask"}


class OandaError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class StreamDropped(Exception):
    """Raised inside a stream body to cut the connection (an injected fault)."""


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json")


def _error(status: int, message: str, code: str | None = None) -> Response:
    body = {"errorMessage": message}
    if code:
        body["errorCode"] = code
    return _json(body, status)


def create_app(sim: Simulator) -> FastAPI:
    app = FastAPI(title="MBATS OANDA v20 simulator", docs_url="/docs", redoc_url=None)
    app.state.sim = sim

    @app.exception_handler(OandaError)
    async def _oanda_error(_: Request, exc: OandaError):
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(OrderError)
    async def _order_error(_: Request, exc: OrderError):
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(BadRequest)
    async def _bad_request(_: Request, exc: BadRequest):
        return _error(400, exc.message)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):  # OANDA's shape, never a traceback
        return _error(500, "An internal server error occurred")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or "request"
        return _error(400, f"Invalid value specified for '{where}'")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        if header != f"Bearer {sim.config.token}":
            sim.stats["401"] += 1
            raise OandaError(401, "Insufficient authorization to perform request.")

    async def guard(request: Request) -> None:
        """Auth, OANDA's rate limit and injected status / delay faults for every /v3 request."""
        sim.stats["requests"] += 1
        authorised(request)
        path = request.url.path
        if "/candles" in path:
            sim.stats["candles"] += 1
        if sim.over_rate_limit():
            sim.stats["429"] += 1
            raise OandaError(429, "Rate limit violation of 120 requests per second")
        delay = sim.faults.take("delay", path)
        if delay:
            await asyncio.sleep(delay.seconds)
        fault = sim.faults.take("status", path)
        if fault:
            sim.stats[f"fault_{fault.status}"] += 1
            raise OandaError(fault.status, fault.message or _status_text(fault.status))

    def account(account_id: str) -> None:
        if account_id != sim.config.account_id:
            raise OandaError(403, "The provided request was forbidden.")

    v3 = [Depends(guard)]

    # --- instruments ----------------------------------------------------------------------
    @app.get("/v3/instruments/{instrument}/candles", dependencies=v3)
    def candles(instrument: str, request: Request):
        q = request.query_params
        instrument = instrument.upper()
        if instrument not in sim.market.series:
            raise OandaError(400, f"Invalid value specified for 'instrument': {instrument}")
        granularity = q.get("granularity", "S5")
        if granularity not in GRANULARITIES:
            raise OandaError(400, "Invalid value specified for 'granularity'")
        if _length_ns(granularity) < sim.market.step:
            raise OandaError(400, f"granularity {granularity} is finer than the replayed {sim.market.granularity} bars")
        price = q.get("price", "M").upper()
        if not price or any(p not in PRICE_KEYS for p in price):
            raise OandaError(400, "Invalid value specified for 'price'")
        from_ns, to_ns = _time_param(q, "from"), _time_param(q, "to")
        if "count" in q and from_ns is not None and to_ns is not None:
            raise OandaError(400, "'count' cannot be specified when 'from' and 'to' are both given")
        if from_ns is not None and to_ns is not None and to_ns < from_ns:
            raise OandaError(400, "Invalid value specified for 'to': it is before 'from'")
        check_candles_query(q, MAX_COUNT)  # count, includeFirst, smooth, alignments
        count = _int_param(q, "count", 500)
        include_first = q.get("includeFirst", "true").lower() != "false"
        with sim.lock:
            sim.sync()
            rows = sim.market.candles(instrument, granularity, count, from_ns, to_ns, include_first)
            half = sim.market.half_spread(instrument)
        if len(rows) > MAX_COUNT:
            raise OandaError(400, "Maximum value for 'count' exceeded")
        digits = sim.market.instrument(instrument).instrument.display_precision or 5
        out = []
        stamps = np.datetime_as_string(np.array([r[0] for r in rows], dtype="int64").view("datetime64[ns]"), unit="ns")
        for (t, o, h, low, c, v, complete), stamp in zip(rows, stamps):
            candle = {"complete": complete, "volume": v, "time": f"{stamp}Z"}
            for p in price:
                shift = {"M": 0.0, "B": -half, "A": half}[p]
                candle[PRICE_KEYS[p]] = {k: f"{x + shift:.{digits}f}" for k, x in (("o", o), ("h", h), ("l", low), ("c", c))}
            out.append(candle)
        fault = sim.faults.take("malformed", request.url.path) if out else None
        if fault:
            _corrupt(out[min(2, len(out) - 1)], fault.variant, PRICE_KEYS[price[0]])
        return _json({"instrument": instrument, "granularity": granularity, "candles": out})

    # --- accounts -------------------------------------------------------------------------
    @app.get("/v3/accounts", dependencies=v3)
    def accounts():
        return _json({"accounts": [{"id": sim.config.account_id, "tags": []}]})

    @app.get("/v3/accounts/{account_id}", dependencies=v3)
    def account_details(account_id: str):
        account(account_id)
        with sim.lock:
            sim.sync()
            acct = sim.account
            body = acct.summary()
            body["trades"] = [acct.trade_json(t) for t in acct.open_trades()]
            body["positions"] = acct.positions()
            body["orders"] = [o.to_json(acct.digits(o.instrument)) for o in acct.orders.values() if o.state == "PENDING"]
            return _json({"account": body, "lastTransactionID": acct.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/summary", dependencies=v3)
    def account_summary(account_id: str):
        account(account_id)
        with sim.lock:
            sim.sync()
            return _json({"account": sim.account.summary(), "lastTransactionID": sim.account.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/instruments", dependencies=v3)
    def account_instruments(account_id: str, request: Request):
        account(account_id)
        wanted = _list_param(request.query_params, "instruments")
        items = []
        for name, series in sim.market.series.items():
            if wanted and name not in wanted:
                continue
            ins = series.instrument
            pip_location = round(math.log10(ins.pip_size))
            items.append({
                "name": name, "type": "CURRENCY", "displayName": ins.display_name,
                "pipLocation": pip_location, "displayPrecision": ins.display_precision, "tradeUnitsPrecision": 0,
                "minimumTradeSize": "1", "maximumTrailingStopDistance": f"{10 ** (pip_location + 4):.{ins.display_precision}f}",
                "minimumTrailingStopDistance": f"{5 * 10 ** pip_location:.{ins.display_precision}f}",
                "maximumPositionSize": "0", "maximumOrderUnits": "100000000",
                **sim.account.terms[name].to_oanda(),  # marginRate and financing (rates, days charged)
            })
        return _json({"instruments": items, "lastTransactionID": sim.account.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/changes", dependencies=v3)
    def account_changes(account_id: str, request: Request):
        account(account_id)
        since = _int_param(request.query_params, "sinceTransactionID", 0, low=0)
        with sim.lock:
            sim.sync()
            acct = sim.account
            state = acct.summary()
            state["trades"] = [acct.trade_json(t) for t in acct.open_trades()]
            state["positions"] = acct.positions()
            state["orders"] = [o.to_json(acct.digits(o.instrument)) for o in acct.orders.values() if o.state == "PENDING"]
            return _json({"changes": acct.changes_since(since), "state": state,
                          "lastTransactionID": acct.last_transaction_id})

    # --- pricing --------------------------------------------------------------------------
    def price_json(name: str) -> dict:
        bid, ask, t = sim.market.quote(name)
        d = sim.market.instrument(name).instrument.display_precision or 5
        price = {"type": "PRICE", "instrument": name, "time": fmt_time(t), "status": "tradeable", "tradeable": True,
                 "bids": [{"price": f"{bid:.{d}f}", "liquidity": 10000000}],
                 "asks": [{"price": f"{ask:.{d}f}", "liquidity": 10000000}],
                 "closeoutBid": f"{bid:.{d}f}", "closeoutAsk": f"{ask:.{d}f}"}
        try:  # as OANDA's prices carry it: quote currency -> account currency, now (mid of the converting pair)
            factor = f"{sim.account.home_rate(name):.8f}"
            price["quoteHomeConversionFactors"] = {"positiveUnits": factor, "negativeUnits": factor}
        except OrderError:
            pass  # no converting pair in the replay: OANDA would have one; unrealised P&L needs the bars then
        return price

    def instruments_param(request: Request) -> list[str]:
        names = _list_param(request.query_params, "instruments")
        if not names:
            raise OandaError(400, "Invalid value specified for 'instruments'")
        unknown = [n for n in names if n not in sim.market.series]
        if unknown:
            raise OandaError(400, f"Invalid value specified for 'instruments': {','.join(unknown)}")
        return names

    @app.get("/v3/accounts/{account_id}/pricing", dependencies=v3)
    def pricing(account_id: str, request: Request):
        account(account_id)
        names = instruments_param(request)
        with sim.lock:
            sim.on_pricing_request()
            return _json({"prices": [price_json(n) for n in names], "time": fmt_time(sim.now)})

    @app.get("/v3/accounts/{account_id}/pricing/stream", dependencies=v3)
    def pricing_stream(account_id: str, request: Request):
        account(account_id)
        names = instruments_param(request)
        drop = sim.faults.take("drop_stream", request.url.path)
        limit = drop.messages if drop else None
        sim.stats["streams"] += 1

        def lines():
            sent = 0
            last_line = time.monotonic()
            last_seen: dict[str, str] = {}

            def emit(obj: dict) -> bytes:
                nonlocal sent, last_line
                if limit is not None and sent >= limit:
                    sim.stats["streams_dropped"] += 1
                    raise StreamDropped(f"stream dropped after {limit} messages (injected fault)")
                sent += 1
                last_line = time.monotonic()
                return (json.dumps(obj, separators=(",", ":")) + "\n").encode()

            while not sim.stopping.is_set():
                with sim.lock:
                    if sent:  # the snapshot goes out first, then the replay moves on
                        sim.on_pricing_request()
                    changed = []
                    for n in names:
                        p = price_json(n)
                        key = p["time"] + p["bids"][0]["price"] + p["asks"][0]["price"]
                        if last_seen.get(n) != key:
                            last_seen[n] = key
                            changed.append(p)
                for p in changed:
                    yield emit(p)
                if time.monotonic() - last_line >= sim.config.heartbeat_seconds:
                    yield emit({"type": "HEARTBEAT", "time": fmt_time(sim.now)})
                if not changed:
                    time.sleep(sim.config.stream_poll_seconds)

        return StreamingResponse(lines(), media_type="application/octet-stream")

    # --- orders ---------------------------------------------------------------------------
    @app.post("/v3/accounts/{account_id}/orders", dependencies=v3)
    async def order_create(account_id: str, request: Request):
        account(account_id)
        try:
            body = await request.json()
        except ValueError:
            raise OandaError(400, "Invalid JSON in the request body") from None
        precision = {n: sim.market.instrument(n).instrument.display_precision or 5 for n in sim.market.series}

        def create() -> Response:
            try:  # checked like OANDA before anything changes; a reject is a transaction too
                check_order(body, precision, sim.market.now)
            except OrderRejected as exc:
                return _json(reject_body(sim.account, exc), 400)
            return _json(sim.account.create_order(body), 201)

        return await asyncio.to_thread(_processed, request, create)

    def _locked(fn):
        with sim.lock:
            sim.sync()
            return fn()

    def _processed(request: Request, fn):
        """Run a request that changes the account; a ``lost_answer`` fault then drops its answer."""
        out = _locked(fn)
        fault = sim.faults.take("lost_answer", request.url.path)
        if fault:
            sim.stats["answers_lost"] += 1
            raise OandaError(fault.status, fault.message or _status_text(fault.status))
        return out

    def order_list(request: Request, pending_only: bool) -> Response:
        with sim.lock:
            acct = sim.account
            chosen = _newest_matching(acct.orders.values(), request.query_params,
                                      "PENDING" if pending_only else None, default_state="PENDING")
            return _json({"orders": [o.to_json(acct.digits(o.instrument)) for o in chosen],
                          "lastTransactionID": acct.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/orders", dependencies=v3)
    def orders(account_id: str, request: Request):
        account(account_id)
        return order_list(request, pending_only=False)

    @app.get("/v3/accounts/{account_id}/pendingOrders", dependencies=v3)
    def pending_orders(account_id: str, request: Request):
        account(account_id)
        return order_list(request, pending_only=True)

    @app.get("/v3/accounts/{account_id}/orders/{specifier}", dependencies=v3)
    def order_details(account_id: str, specifier: str):
        account(account_id)
        with sim.lock:
            o = sim.account.find_order(specifier)
            return _json({"order": o.to_json(sim.account.digits(o.instrument)),
                          "lastTransactionID": sim.account.last_transaction_id})

    @app.put("/v3/accounts/{account_id}/orders/{specifier}/cancel", dependencies=v3)
    def order_cancel(account_id: str, specifier: str, request: Request):
        account(account_id)
        return _processed(request, lambda: _json(sim.account.cancel_order(specifier)))

    # --- trades and positions ---------------------------------------------------------------
    def trade_list(request: Request, open_only: bool) -> Response:
        with sim.lock:
            sim.sync()
            acct = sim.account
            chosen = _newest_matching(acct.trades.values(), request.query_params, "OPEN" if open_only else None,
                                      default_state="OPEN")
            return _json({"trades": [acct.trade_json(t) for t in chosen], "lastTransactionID": acct.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/trades", dependencies=v3)
    def trades(account_id: str, request: Request):
        account(account_id)
        return trade_list(request, open_only=False)

    @app.get("/v3/accounts/{account_id}/openTrades", dependencies=v3)
    def open_trades(account_id: str, request: Request):
        account(account_id)
        return trade_list(request, open_only=True)

    @app.get("/v3/accounts/{account_id}/trades/{specifier}", dependencies=v3)
    def trade_details(account_id: str, specifier: str):
        account(account_id)
        with sim.lock:
            sim.sync()
            return _json({"trade": sim.account.trade_json(sim.account.find_trade(specifier)),
                          "lastTransactionID": sim.account.last_transaction_id})

    @app.put("/v3/accounts/{account_id}/trades/{specifier}/close", dependencies=v3)
    async def trade_close(account_id: str, specifier: str, request: Request):
        account(account_id)
        body = await _optional_json(request)
        units = body.get("units", "ALL")
        return await asyncio.to_thread(_processed, request, lambda: _json(sim.account.close_trade(specifier, units)))

    @app.get("/v3/accounts/{account_id}/positions", dependencies=v3)
    def positions(account_id: str):
        account(account_id)
        return _locked(lambda: _json({"positions": sim.account.positions(),
                                      "lastTransactionID": sim.account.last_transaction_id}))

    @app.get("/v3/accounts/{account_id}/openPositions", dependencies=v3)
    def open_positions(account_id: str):
        account(account_id)

        def body():
            held = {t.instrument for t in sim.account.open_trades()}
            return _json({"positions": [p for p in sim.account.positions() if p["instrument"] in held],
                          "lastTransactionID": sim.account.last_transaction_id})

        return _locked(body)

    @app.get("/v3/accounts/{account_id}/positions/{instrument}", dependencies=v3)
    def position_details(account_id: str, instrument: str):
        account(account_id)
        if instrument.upper() not in sim.market.series:
            raise OandaError(400, f"Invalid value specified for 'instrument': {instrument}")
        return _locked(lambda: _json({"position": sim.account.positions(instrument.upper())[0],
                                      "lastTransactionID": sim.account.last_transaction_id}))

    @app.put("/v3/accounts/{account_id}/positions/{instrument}/close", dependencies=v3)
    async def position_close(account_id: str, instrument: str, request: Request):
        account(account_id)
        body = await _optional_json(request)
        check_position_close(body)
        return await asyncio.to_thread(_processed, request,
                                       lambda: _json(sim.account.close_position(instrument, body)))

    # --- transactions ---------------------------------------------------------------------
    @app.get("/v3/accounts/{account_id}/transactions/sinceid", dependencies=v3)
    def transactions_since(account_id: str, request: Request):
        account(account_id)
        since = _int_param(request.query_params, "id", None, low=0)
        if since is None:
            raise OandaError(400, "Invalid value specified for 'id'")
        with sim.lock:
            txns = [t for t in sim.account.transactions if int(t["id"]) > since]
            return _json({"transactions": txns, "lastTransactionID": sim.account.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/transactions/idrange", dependencies=v3)
    def transactions_range(account_id: str, request: Request):
        account(account_id)
        lo, hi = _int_param(request.query_params, "from", 1, low=1), _int_param(request.query_params, "to", 10**12, low=1)
        if hi < lo:
            raise OandaError(400, "Invalid value specified for 'to': it is below 'from'")
        with sim.lock:
            txns = [t for t in sim.account.transactions if lo <= int(t["id"]) <= hi]
            return _json({"transactions": txns, "lastTransactionID": sim.account.last_transaction_id})

    @app.get("/v3/accounts/{account_id}/transactions", dependencies=v3)
    def transactions(account_id: str, request: Request):
        account(account_id)
        page = _int_param(request.query_params, "pageSize", 100, low=1, high=1000)
        with sim.lock:
            last = int(sim.account.last_transaction_id)
            base = str(request.base_url).rstrip("/")
            pages = [f"{base}/v3/accounts/{account_id}/transactions/idrange?from={i}&to={min(i + page - 1, last)}"
                     for i in range(1, last + 1, page)]
            return _json({"from": fmt_time(sim.account.created_time), "to": fmt_time(sim.now), "pageSize": page,
                          "count": last, "pages": pages, "lastTransactionID": str(last)})

    @app.get("/v3/accounts/{account_id}/transactions/{tid}", dependencies=v3)
    def transaction_details(account_id: str, tid: str):
        account(account_id)
        with sim.lock:
            for t in sim.account.transactions:
                if t["id"] == tid:
                    return _json({"transaction": t, "lastTransactionID": sim.account.last_transaction_id})
        raise OandaError(404, "The Transaction specified does not exist", "TRANSACTION_DOESNT_EXIST")

    # --- admin (tests and the live-trading engineer; same token) -----------------------------
    @app.get("/admin/clock", dependencies=[Depends(authorised)])
    def clock():
        sim.sync()
        return {"time": fmt_time(sim.now), "mode": sim.mode, "factor": sim.factor,
                "start": fmt_time(sim.market.start), "end": fmt_time(sim.market.end)}

    @app.post("/admin/clock/advance", dependencies=[Depends(authorised)])
    async def clock_advance(request: Request):
        body = await _optional_json(request)
        if "to" in body:
            try:
                target = parse_time(str(body["to"]))
            except ValueError:
                raise OandaError(400, "Invalid value specified for 'to'") from None
            await asyncio.to_thread(sim.advance_to, target)
        else:
            bars = body.get("bars", 1)
            if isinstance(bars, bool) or not isinstance(bars, int) or not 0 <= bars <= 10**7:
                raise OandaError(400, "Invalid value specified for 'bars' (a whole number from 0)")
            await asyncio.to_thread(sim.advance, bars)
        return {"time": fmt_time(sim.now)}

    @app.get("/admin/faults", dependencies=[Depends(authorised)])
    def faults_list():
        return {"faults": sim.faults.pending()}

    @app.post("/admin/faults", dependencies=[Depends(authorised)])
    async def faults_add(request: Request):
        body = await _optional_json(request)
        allowed = {f.name for f in fields(Fault)}
        try:
            sim.faults.add(Fault(**{k: v for k, v in body.items() if k in allowed}))
        except TypeError as exc:
            raise OandaError(400, f"bad fault: {exc}") from None
        return {"faults": sim.faults.pending()}

    @app.delete("/admin/faults", dependencies=[Depends(authorised)])
    def faults_clear():
        sim.faults.clear()
        return {"faults": []}

    @app.get("/admin/stats", dependencies=[Depends(authorised)])
    def stats():
        return dict(sim.stats)

    @app.get("/health")
    def health():
        return {"status": "ok", "time": fmt_time(sim.now)}

    return app


# --- helpers -------------------------------------------------------------------------------
def _status_text(status: int) -> str:
    return {429: "Rate limit violation of 120 requests per second", 500: "An internal server error occurred",
            502: "Bad gateway", 503: "Service unavailable, please try again later",
            504: "Gateway timeout"}.get(status, f"Injected error {status}")


def _length_ns(granularity: str) -> int:
    step = GRANULARITIES[granularity]
    return step.value if hasattr(step, "value") else 7 * 86400 * 10**9


def _time_param(q, name: str) -> int | None:
    if name not in q:
        return None
    try:
        ns = parse_time(q[name])
    except (ValueError, OverflowError):
        raise OandaError(400, f"Invalid value specified for '{name}'") from None
    if not 0 <= ns < 2**63 - 1:  # before 1970 or past 2262: nothing a datetime64 can hold
        raise OandaError(400, f"Invalid value specified for '{name}'")
    return ns


def _int_param(q, name: str, default, low: int | None = None, high: int | None = None):
    return int_param(q, name, default, low, high)


def _newest_matching(items, query, state: str | None, default_state: str) -> list:
    """Orders or trades filtered like OANDA's list endpoints: state, instrument, ids; newest first."""
    state = state or query.get("state", default_state).upper()
    instrument = query.get("instrument")
    ids = set(_list_param(query, "ids"))
    count = _int_param(query, "count", 50, low=1, high=500)
    return [x for x in reversed(list(items))
            if (state == "ALL" or x.state == state) and (not instrument or x.instrument == instrument)
            and (not ids or x.id in ids)][:count]


def _list_param(q, name: str) -> list[str]:
    return [x.strip().upper() if name == "instruments" else x.strip() for x in q.get(name, "").split(",") if x.strip()]


async def _optional_json(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise OandaError(400, "Invalid JSON in the request body") from None
    if not isinstance(body, dict):
        raise OandaError(400, "The request body must be a JSON object")
    return body


def _corrupt(candle: dict, variant: str, key: str) -> None:
    prices = candle[key]
    if variant == "nan":
        prices["c"] = "NaN"
    elif variant == "inverted":
        prices["h"], prices["l"] = prices["l"], prices["h"]
    else:
        prices.pop("h", None)
