"""Bad requests to the simulator, over real HTTP with the real oandapyV20 client: every one answered
HTTP 400 in OANDA's shape (errorMessage; for orders OANDA reads, an ORDER_REJECT transaction with
OANDA's rejectReason), never a 500 or a traceback, and nothing in the account changes but the
reject transaction."""

from __future__ import annotations

import json

import oandapyV20.endpoints.accounts as accounts
import oandapyV20.endpoints.instruments as instruments
import oandapyV20.endpoints.orders as orders
import oandapyV20.endpoints.positions as positions
import oandapyV20.endpoints.trades as trades
import oandapyV20.endpoints.transactions as transactions
import pandas as pd
import pytest
import requests
from oandapyV20 import API
from oandapyV20.exceptions import V20Error

from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator
from mbats.venues.oanda.client import register_environment

ACC = DEFAULT_ACCOUNT
T0 = pd.Timestamp("2024-03-05 10:00", tz="UTC")
FUTURE = "2024-03-06T10:00:00Z"
PAST = "2024-03-01T10:00:00Z"


@pytest.fixture(scope="module")
def sim():
    bars = pd.DataFrame({"open": 1.1, "high": 1.1005, "low": 1.0995, "close": 1.1, "volume": 10},
                        index=pd.date_range(T0, periods=600, freq="1min"))
    server = SimServer(Simulator({"EUR_USD": bars}, "M1", SimConfig(start=T0 + pd.Timedelta(minutes=300)))).start()
    env = f"sim-{server.port}"
    register_environment(env, server.url)
    yield server, API(access_token=DEFAULT_TOKEN, environment=env)
    server.stop()


def ok(**order) -> dict:
    return {"type": "MARKET", "instrument": "EUR_USD", "units": "100"} | order


# (case, order, OANDA rejectReason): each is read and rejected with a <TYPE>_ORDER_REJECT transaction
REJECTED = [
    ("units zero", ok(units="0"), "UNITS_INVALID"),
    ("units not a number", ok(units="ten"), "UNITS_INVALID"),
    ("units infinite", ok(units="inf"), "UNITS_INVALID"),
    ("units NaN", ok(units="NaN"), "UNITS_INVALID"),
    ("units exponent", ok(units="1e400"), "UNITS_INVALID"),
    ("units boolean", ok(units=True), "UNITS_INVALID"),
    ("units a list", ok(units=[100]), "UNITS_INVALID"),
    ("units fractional", ok(units="100.5"), "UNITS_PRECISION_EXCEEDED"),
    ("units over the order limit", ok(units="100000001"), "UNITS_LIMIT_EXCEEDED"),
    ("units huge", ok(units="9" * 40), "UNITS_LIMIT_EXCEEDED"),
    ("units missing", {"type": "MARKET", "instrument": "EUR_USD"}, "UNITS_MISSING"),
    ("instrument missing", {"type": "MARKET", "units": "100"}, "INSTRUMENT_MISSING"),
    ("instrument unknown", ok(instrument="XXX_YYY"), "INSTRUMENT_UNKNOWN"),
    ("instrument not a string", ok(instrument=7), "INSTRUMENT_UNKNOWN"),
    ("market GTC", ok(timeInForce="GTC"), "TIME_IN_FORCE_INVALID"),
    ("market GTD", ok(timeInForce="GTD", gtdTime=FUTURE), "TIME_IN_FORCE_INVALID"),
    ("time in force unknown", ok(type="LIMIT", price="1.09", timeInForce="FOREVER"), "TIME_IN_FORCE_INVALID"),
    ("GTD without gtdTime", ok(type="LIMIT", price="1.09", timeInForce="GTD"), "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING"),
    ("GTD in the past", ok(type="LIMIT", price="1.09", timeInForce="GTD", gtdTime=PAST),
     "TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST"),
    ("GTD garbage", ok(type="LIMIT", price="1.09", timeInForce="GTD", gtdTime="soon"),
     "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING"),
    ("limit without price", ok(type="LIMIT"), "PRICE_MISSING"),
    ("limit price negative", ok(type="LIMIT", price="-1.09"), "PRICE_INVALID"),
    ("limit price zero", ok(type="STOP", price="0"), "PRICE_INVALID"),
    ("limit price text", ok(type="LIMIT", price="cheap"), "PRICE_INVALID"),
    ("limit price infinite", ok(type="LIMIT", price="Infinity"), "PRICE_INVALID"),
    ("limit price too precise", ok(type="LIMIT", price="1.0912345"), "PRICE_PRECISION_EXCEEDED"),
    ("price bound negative", ok(priceBound="-1"), "PRICE_BOUND_INVALID"),
    ("position fill unknown", ok(positionFill="SOMETIMES"), "POSITION_FILL_INVALID"),
    ("take profit without price", ok(takeProfitOnFill={}), "TAKE_PROFIT_ON_FILL_PRICE_MISSING"),
    ("take profit negative", ok(takeProfitOnFill={"price": "-1"}), "TAKE_PROFIT_ON_FILL_PRICE_INVALID"),
    ("take profit FOK", ok(takeProfitOnFill={"price": "1.2", "timeInForce": "FOK"}),
     "TAKE_PROFIT_ON_FILL_TIME_IN_FORCE_INVALID"),
    ("stop loss empty", ok(stopLossOnFill={}), "STOP_LOSS_ON_FILL_PRICE_AND_DISTANCE_BOTH_MISSING"),
    ("stop loss price text", ok(stopLossOnFill={"price": "low"}), "STOP_LOSS_ON_FILL_PRICE_INVALID"),
    ("stop loss distance negative", ok(stopLossOnFill={"distance": "-0.001"}), "STOP_LOSS_ON_FILL_DISTANCE_INVALID"),
    ("trailing stop without distance", ok(trailingStopLossOnFill={}), "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MISSING"),
    ("trailing stop distance zero", ok(trailingStopLossOnFill={"distance": "0"}),
     "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_INVALID"),
    ("client id too long", ok(clientExtensions={"id": "x" * 200}), "CLIENT_ORDER_ID_INVALID"),
    ("client extensions not an object", ok(clientExtensions="mine"), "CLIENT_ORDER_ID_INVALID"),
]


def account_state(api: API) -> tuple:
    acct = api.request(accounts.AccountDetails(ACC))["account"]
    return acct["balance"], acct["openTradeCount"], acct["pendingOrderCount"], len(acct["orders"])


@pytest.mark.parametrize("case,order,reason", REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected_orders_answer_like_oanda(sim, case, order, reason):
    server, api = sim
    before = account_state(api)
    last = api.request(accounts.AccountSummary(ACC))["lastTransactionID"]
    with pytest.raises(V20Error) as info:
        api.request(orders.OrderCreate(ACC, data={"order": order}))
    assert info.value.code == 400, info.value.msg
    body = json.loads(info.value.msg)
    reject = body["orderRejectTransaction"]
    assert reject["rejectReason"] == body["errorCode"] == reason
    assert reject["type"] == f"{str(order.get('type', 'MARKET')).upper()}_ORDER_REJECT"
    assert body["errorMessage"] and "Traceback" not in info.value.msg
    assert int(body["lastTransactionID"]) == int(last) + 1 == int(reject["id"])
    assert account_state(api) == before  # nothing but the reject transaction
    recorded = api.request(transactions.TransactionDetails(ACC, reject["id"]))["transaction"]
    assert recorded["rejectReason"] == reason


# (case, raw body): not an order OANDA can read → 400 with an errorMessage and no transaction
MALFORMED = [
    ("not JSON", b"{order: market"),
    ("truncated JSON", b'{"order": {"type": "MARKET"'),
    ("not UTF-8", b"\xff\xfe{}"),
    ("a list", b"[1, 2]"),
    ("no order", b'{"units": "100"}'),
    ("order not an object", b'{"order": "buy"}'),
    ("type unknown", b'{"order": {"type": "YOLO", "instrument": "EUR_USD", "units": "1"}}'),
    ("type not a string", b'{"order": {"type": 3, "instrument": "EUR_USD", "units": "1"}}'),
    ("empty body", b""),
]


@pytest.mark.parametrize("case,raw", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_order_bodies_get_a_400_error_message(sim, case, raw):
    server, api = sim
    last = api.request(accounts.AccountSummary(ACC))["lastTransactionID"]
    r = requests.post(f"{server.url}/v3/accounts/{ACC}/orders", data=raw, timeout=10,
                      headers={"Authorization": f"Bearer {DEFAULT_TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert set(r.json()) <= {"errorMessage", "errorCode"} and r.json()["errorMessage"], r.text
    assert api.request(accounts.AccountSummary(ACC))["lastTransactionID"] == last


# (case, candles params, words of the errorMessage)
CANDLES = [
    ("count zero", {"count": 0}, "count"),
    ("count negative", {"count": -5}, "count"),
    ("count over 5000", {"count": 5001}, "Maximum value for 'count'"),
    ("count text", {"count": "many"}, "count"),
    ("count fractional", {"count": "10.5"}, "count"),
    ("count huge", {"count": "9" * 30}, "count"),
    ("granularity unknown", {"granularity": "M7"}, "granularity"),
    ("granularity lower case", {"granularity": "h1"}, "granularity"),
    ("price component unknown", {"price": "X"}, "price"),
    ("from garbage", {"from": "yesterday-ish"}, "from"),
    ("from infinite", {"from": "inf"}, "from"),
    ("from far future", {"from": "1e30"}, "from"),
    ("to before from", {"from": "2024-03-05T12:00:00Z", "to": "2024-03-05T11:00:00Z"}, "to"),
    ("count with from and to", {"from": "2024-03-05T10:00:00Z", "to": "2024-03-05T11:00:00Z", "count": 10}, "count"),
    ("includeFirst not a boolean", {"includeFirst": "maybe"}, "includeFirst"),
    ("smooth not a boolean", {"smooth": "yes"}, "smooth"),
    ("daily alignment 24", {"dailyAlignment": 24}, "dailyAlignment"),
    ("weekly alignment unknown", {"weeklyAlignment": "Funday"}, "weeklyAlignment"),
]


@pytest.mark.parametrize("case,params,words", CANDLES, ids=[c[0] for c in CANDLES])
def test_bad_candle_requests_get_a_400(sim, case, params, words):
    _, api = sim
    with pytest.raises(V20Error) as info:
        api.request(instruments.InstrumentsCandles("EUR_USD", params={"granularity": "M1"} | params))
    assert info.value.code == 400, info.value.msg
    assert words in json.loads(info.value.msg)["errorMessage"]


def test_unknown_instrument_candles_and_valid_edges_still_work(sim):
    _, api = sim
    with pytest.raises(V20Error) as info:
        api.request(instruments.InstrumentsCandles("NOPE_XXX", params={"granularity": "M1"}))
    assert info.value.code == 400
    # the edges of the allowed ranges are accepted
    got = api.request(instruments.InstrumentsCandles("EUR_USD", params={"granularity": "M1", "count": 5000,
                                                                        "includeFirst": "false", "smooth": "false"}))
    assert 0 < len(got["candles"]) <= 5000
    got = api.request(instruments.InstrumentsCandles("EUR_USD", params={"granularity": "M1", "count": 1}))
    assert len(got["candles"]) == 1


# (case, request builder) for the other endpoints that take input
OTHERS = [
    ("transactions pageSize 0", lambda: transactions.TransactionList(ACC, params={"pageSize": 0})),
    ("transactions pageSize 1001", lambda: transactions.TransactionList(ACC, params={"pageSize": 1001})),
    ("transactions since text", lambda: transactions.TransactionsSinceID(ACC, params={"id": "first"})),
    ("transactions since negative", lambda: transactions.TransactionsSinceID(ACC, params={"id": -1})),
    ("transaction range reversed", lambda: transactions.TransactionIDRange(ACC, params={"from": 5, "to": 2})),
    ("orders count 501", lambda: orders.OrderList(ACC, params={"count": 501})),
    ("trades count text", lambda: trades.TradesList(ACC, params={"count": "all"})),
    ("changes since text", lambda: accounts.AccountChanges(ACC, params={"sinceTransactionID": "x"})),
    ("position close negative units", lambda: positions.PositionClose(ACC, "EUR_USD", data={"longUnits": "-5"})),
    ("position close fractional units", lambda: positions.PositionClose(ACC, "EUR_USD", data={"longUnits": "1.5"})),
    ("position close text units", lambda: positions.PositionClose(ACC, "EUR_USD", data={"shortUnits": "half"})),
    ("position close unknown instrument", lambda: positions.PositionClose(ACC, "XXX_YYY", data={"longUnits": "ALL"})),
]


@pytest.mark.parametrize("case,endpoint", OTHERS, ids=[c[0] for c in OTHERS])
def test_other_bad_requests_get_a_400(sim, case, endpoint):
    _, api = sim
    with pytest.raises(V20Error) as info:
        api.request(endpoint())
    assert info.value.code == 400, info.value.msg
    assert json.loads(info.value.msg)["errorMessage"]


def test_bad_clock_advance_is_refused(sim):
    server, _ = sim
    for body in ({"bars": "many"}, {"bars": -1}, {"bars": 1.5}, {"to": "whenever"}):
        r = requests.post(f"{server.url}/admin/clock/advance", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
        assert r.status_code == 400 and r.json()["errorMessage"], (body, r.text)


def test_a_valid_order_still_fills_after_all_the_rejects(sim):
    _, api = sim
    r = api.request(orders.OrderCreate(ACC, data={"order": ok(units="100", stopLossOnFill={"distance": "0.0050"})}))
    assert r["orderFillTransaction"]["units"] == "100"
    api.request(positions.PositionClose(ACC, "EUR_USD", data={"longUnits": "ALL"}))
