"""Order round trips against the simulator with the real oandapyV20 client, checked by hand.

EUR_USD bars (mid, one-pip spread → bid = mid − 0.00005, ask = mid + 0.00005):

    bar  time   open    high    low     close
    2    10:02  1.1000  1.1020  1.0980  1.0990
    3    10:03  1.0990  1.0995  1.0940  1.0945
    4    10:04  1.0925  1.0950  1.0900  1.0910   (opens with a gap below bar 3's close)
    5    10:05  1.0910  1.0960  1.0905  1.0950
"""

from __future__ import annotations

import time

import oandapyV20.endpoints.accounts as accounts
import oandapyV20.endpoints.orders as orders
import oandapyV20.endpoints.positions as positions
import oandapyV20.endpoints.pricing as pricing
import oandapyV20.endpoints.trades as trades
import oandapyV20.endpoints.transactions as transactions
import pandas as pd
import pytest
import requests
from oandapyV20 import API

from mbats.venues.oanda.client import register_environment
from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, Fault, SimConfig, SimServer, Simulator

T0 = pd.Timestamp("2024-03-05 10:00", tz="UTC")
ACC = DEFAULT_ACCOUNT


def eurusd() -> pd.DataFrame:
    rows = [(1.1000, 1.1005, 1.0995, 1.1000), (1.1000, 1.1005, 1.0995, 1.1000), (1.1000, 1.1020, 1.0980, 1.0990),
            (1.0990, 1.0995, 1.0940, 1.0945), (1.0925, 1.0950, 1.0900, 1.0910), (1.0910, 1.0960, 1.0905, 1.0950)]
    rows += [(1.0950, 1.0950, 1.0950, 1.0950)] * 4
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"],
                        index=pd.date_range(T0, periods=len(rows), freq="1min")).assign(volume=10)


def usdjpy() -> pd.DataFrame:
    rows = [(150.0, 150.0, 150.0, 150.0)] * 3 + [(151.0, 151.0, 151.0, 151.0)] * 7
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"],
                        index=pd.date_range(T0, periods=len(rows), freq="1min")).assign(volume=10)


@pytest.fixture
def make_sim():
    servers = []

    def make(clock: str = "10:02", **config) -> tuple[SimServer, API]:
        config.setdefault("start", T0.replace(hour=10, minute=int(clock[3:])))
        server = SimServer(Simulator({"EUR_USD": eurusd(), "USD_JPY": usdjpy()}, "M1", SimConfig(**config))).start()
        servers.append(server)
        env = f"sim-{server.port}"
        register_environment(env, server.url)
        return server, API(access_token=DEFAULT_TOKEN, environment=env)

    yield make
    for s in servers:
        s.stop()


def place(api: API, **order) -> dict:
    order.setdefault("type", "MARKET")
    return api.request(orders.OrderCreate(ACC, data={"order": order}))


def summary(api: API) -> dict:
    return api.request(accounts.AccountSummary(ACC))["account"]


def test_market_order_with_sl_tp_then_stop_loss_on_a_later_bar(make_sim):
    server, api = make_sim("10:02")
    r = place(api, instrument="EUR_USD", units="10000", stopLossOnFill={"price": "1.09500"},
              takeProfitOnFill={"price": "1.11000"}, clientExtensions={"id": "my-1", "tag": "sma"})
    fill = r["orderFillTransaction"]
    assert fill["price"] == "1.10005" and fill["tradeOpened"]["units"] == "10000"  # bought at the ask
    trade_id = fill["tradeOpened"]["tradeID"]
    trade = api.request(trades.TradeDetails(ACC, trade_id))["trade"]
    assert trade["stopLossOrder"]["price"] == "1.09500" and trade["takeProfitOrder"]["price"] == "1.11000"
    assert api.request(orders.OrderDetails(ACC, "@my-1"))["order"]["state"] == "FILLED"

    server.sim.advance(1)  # bar 2 completes (bid low 1.09795): nothing triggers; bar 3 opens at 1.0990
    s = summary(api)
    assert float(s["unrealizedPL"]) == pytest.approx(10000 * (1.09895 - 1.10005))  # −11.00, valued at the bid
    assert float(s["marginUsed"]) == pytest.approx(10000 * 1.0990 * 0.02)  # 219.80
    assert float(s["NAV"]) == pytest.approx(100_000 - 11.0)
    assert s["openTradeCount"] == 1 and s["pendingOrderCount"] == 2

    server.sim.advance(1)  # bar 3: bid low 1.09395 ≤ SL 1.09500 → stopped at 1.09500
    closed = api.request(trades.TradeDetails(ACC, trade_id))["trade"]
    expected_pl = 10000 * (1.09500 - 1.10005)  # −50.50
    assert closed["state"] == "CLOSED" and float(closed["realizedPL"]) == pytest.approx(expected_pl)
    assert closed["averageClosePrice"] == "1.09500"
    s = summary(api)
    assert float(s["balance"]) == pytest.approx(100_000 + expected_pl)
    assert float(s["unrealizedPL"]) == 0 and s["openTradeCount"] == 0 and s["pendingOrderCount"] == 0
    position = api.request(positions.PositionDetails(ACC, "EUR_USD"))["position"]
    assert position["long"]["units"] == "0" and float(position["pl"]) == pytest.approx(expected_pl)
    since = api.request(transactions.TransactionsSinceID(ACC, params={"id": r["lastTransactionID"]}))["transactions"]
    assert [(t["type"], t.get("reason")) for t in since] == [("ORDER_FILL", "STOP_LOSS_ORDER"),
                                                             ("ORDER_CANCEL", "LINKED_TRADE_CLOSED")]
    assert float(since[0]["accountBalance"]) == pytest.approx(100_000 + expected_pl)


def test_short_take_profit_and_gap_through_a_stop(make_sim):
    server, api = make_sim("10:03")  # bar 3 has just opened at 1.0990: bid 1.09895, ask 1.09905
    short = place(api, instrument="EUR_USD", units="-5000", takeProfitOnFill={"price": "1.0920"},
                  stopLossOnFill={"price": "1.1000"})["orderFillTransaction"]
    long = place(api, instrument="USD_JPY", units="1", positionFill="DEFAULT")  # unrelated position
    assert short["price"] == "1.09895" and long["orderFillTransaction"]["price"] == "151.005"
    gap = place(api, instrument="EUR_USD", units="-3000", positionFill="OPEN_ONLY")  # does not net the short
    assert "tradeOpened" in gap["orderFillTransaction"]
    with_stop = place(api, instrument="EUR_USD", units="2000", positionFill="OPEN_ONLY",
                      stopLossOnFill={"price": "1.0930"})["orderFillTransaction"]
    assert with_stop["price"] == "1.09905"
    server.sim.advance(2)  # bar 3 then bar 4, which opens at 1.0925 below the 1.0930 stop
    tp = api.request(trades.TradeDetails(ACC, short["tradeOpened"]["tradeID"]))["trade"]
    assert float(tp["realizedPL"]) == pytest.approx(-5000 * (1.0920 - 1.09895))  # +34.75 at the take profit
    stopped = api.request(trades.TradeDetails(ACC, with_stop["tradeOpened"]["tradeID"]))["trade"]
    assert stopped["averageClosePrice"] == "1.09245"  # filled at the gapped open bid, not at 1.0930
    assert float(stopped["realizedPL"]) == pytest.approx(2000 * (1.09245 - 1.09905))


def test_limit_order_fills_later_then_partial_trade_close_and_position_close(make_sim):
    server, api = make_sim("10:02")
    limit = place(api, type="LIMIT", instrument="EUR_USD", units="1000", price="1.0960",
                  takeProfitOnFill={"price": "1.0990"}, clientExtensions={"id": "lim-1"})
    stop = place(api, type="STOP", instrument="EUR_USD", units="1000", price="1.2000")
    pending = api.request(orders.OrdersPending(ACC))["orders"]
    assert {o["type"] for o in pending} == {"LIMIT", "STOP"}
    cancel = api.request(orders.OrderCancel(ACC, stop["orderCreateTransaction"]["id"]))
    assert cancel["orderCancelTransaction"]["reason"] == "CLIENT_REQUEST"

    server.sim.advance(2)  # bar 3: ask low 1.09405 ≤ 1.0960 → filled at the limit
    order = api.request(orders.OrderDetails(ACC, "@lim-1"))["order"]
    assert order["state"] == "FILLED"
    trade_id = order["tradeOpenedID"]
    trade = api.request(trades.TradeDetails(ACC, trade_id))["trade"]
    assert trade["price"] == "1.09600" and trade["takeProfitOrder"]["state"] == "PENDING"

    server.sim.advance(1)  # bar 5 opens at 1.0910: bid 1.09095
    part = api.request(trades.TradeClose(ACC, trade_id, data={"units": "400"}))
    assert float(part["orderFillTransaction"]["tradeReduced"]["realizedPL"]) == pytest.approx(400 * (1.09095 - 1.0960))
    closeout = api.request(positions.PositionClose(ACC, "EUR_USD", data={"longUnits": "ALL"}))
    assert closeout["longOrderFillTransaction"]["units"] == "-600"
    total = 1000 * (1.09095 - 1.0960)  # −5.05
    s = summary(api)
    assert float(s["balance"]) == pytest.approx(100_000 + total) and float(s["pl"]) == pytest.approx(total)
    assert api.request(trades.OpenTrades(ACC))["trades"] == []
    all_orders = api.request(orders.OrderList(ACC, params={"state": "ALL"}))["orders"]
    assert {o["id"]: o["state"] for o in all_orders}[trade["takeProfitOrder"]["id"]] == "CANCELLED"


def test_pl_in_another_quote_currency_is_converted_home(make_sim):
    server, api = make_sim("10:02")
    fill = place(api, instrument="USD_JPY", units="1000")["orderFillTransaction"]
    assert fill["price"] == "150.005"
    server.sim.advance(1)  # bar 3 opens at 151.000
    out = api.request(trades.TradeClose(ACC, fill["tradeOpened"]["tradeID"]))
    jpy = 1000 * (150.995 - 150.005)
    assert float(out["orderFillTransaction"]["pl"]) == pytest.approx(jpy / 151.0, abs=1e-4)  # 6.5563 USD
    assert float(summary(api)["balance"]) == pytest.approx(100_000 + jpy / 151.0, abs=1e-4)


def test_trailing_stop_follows_the_high(make_sim):
    server, api = make_sim("10:02")
    fill = place(api, instrument="EUR_USD", units="10000",
                 trailingStopLossOnFill={"distance": "0.0030"})["orderFillTransaction"]
    tid = fill["tradeOpened"]["tradeID"]
    assert api.request(trades.TradeDetails(ACC, tid))["trade"]["trailingStopLossOrder"]["trailingStopValue"] == "1.09705"
    server.sim.advance(1)  # bar 2 high bid 1.10195 → trail to 1.09895
    assert api.request(trades.TradeDetails(ACC, tid))["trade"]["trailingStopLossOrder"]["trailingStopValue"] == "1.09895"
    server.sim.advance(1)  # bar 3 opens at bid 1.09895: stopped there
    trade = api.request(trades.TradeDetails(ACC, tid))["trade"]
    assert trade["state"] == "CLOSED" and trade["averageClosePrice"] == "1.09895"


def test_order_errors_look_like_oanda(make_sim):
    from oandapyV20.exceptions import V20Error

    server, api = make_sim("10:02")
    with pytest.raises(V20Error) as err:
        place(api, instrument="EUR_USD", units="abc")
    assert err.value.code == 400 and "units" in err.value.msg
    with pytest.raises(V20Error) as err:
        place(api, instrument="XXX_YYY", units="1")
    assert err.value.code == 400 and "errorMessage" in err.value.msg
    with pytest.raises(V20Error) as err:
        api.request(orders.OrderCancel(ACC, "999"))
    assert err.value.code == 404 and "ORDER_DOESNT_EXIST" in err.value.msg
    with pytest.raises(V20Error) as err:
        api.request(accounts.AccountSummary("101-000-0000000-999"))
    assert err.value.code == 403
    bad = API(access_token="wrong", environment=f"sim-{server.port}")
    with pytest.raises(V20Error) as err:
        bad.request(accounts.AccountList())
    assert err.value.code == 401 and "errorMessage" in err.value.msg


def test_account_endpoints_and_changes(make_sim):
    server, api = make_sim("10:02")
    assert api.request(accounts.AccountList())["accounts"][0]["id"] == ACC
    first = api.request(accounts.AccountDetails(ACC))
    since = first["lastTransactionID"]
    place(api, instrument="EUR_USD", units="100", takeProfitOnFill={"price": "1.2"})
    changes = api.request(accounts.AccountChanges(ACC, params={"sinceTransactionID": since}))
    assert len(changes["changes"]["tradesOpened"]) == 1 and len(changes["changes"]["ordersFilled"]) == 1
    assert {o["type"] for o in changes["changes"]["ordersCreated"]} == {"MARKET", "TAKE_PROFIT"}
    assert changes["state"]["openTradeCount"] == 1
    names = [i["name"] for i in api.request(accounts.AccountInstruments(ACC))["instruments"]]
    assert names == ["EUR_USD", "USD_JPY"]
    details = api.request(accounts.AccountDetails(ACC))["account"]
    assert len(details["trades"]) == 1 and details["positions"][0]["long"]["units"] == "100"


def test_pricing_stream_heartbeats_and_injected_drop(make_sim):
    server, api = make_sim("10:02", heartbeat_seconds=0.2)
    stream = pricing.PricingStream(ACC, params={"instruments": "EUR_USD,USD_JPY"})
    seen = []
    for msg in api.request(stream):
        seen.append(msg)
        if len(seen) == 3:
            break
    assert [m["type"] for m in seen] == ["PRICE", "PRICE", "HEARTBEAT"]
    assert seen[0]["bids"][0]["price"] == "1.09995" and seen[0]["asks"][0]["price"] == "1.10005"

    server.sim.faults.add(Fault("drop_stream", messages=2))
    got = []
    with pytest.raises(requests.RequestException):
        for msg in api.request(pricing.PricingStream(ACC, params={"instruments": "EUR_USD"})):
            got.append(msg)
            if len(got) > 50:
                break
    assert len(got) == 2 and server.sim.stats["streams_dropped"] == 1


def test_stream_follows_the_clock(make_sim):
    server, api = make_sim("10:02", heartbeat_seconds=30)
    messages = api.request(pricing.PricingStream(ACC, params={"instruments": "EUR_USD"}))
    assert next(messages)["bids"][0]["price"] == "1.09995"
    server.sim.advance(1)  # bar 3 opens at 1.0990
    assert next(messages)["bids"][0]["price"] == "1.09895"


def test_step_mode_moves_one_bar_per_poll(make_sim):
    server, api = make_sim("10:02", speed="step")
    times = [api.request(pricing.PricingInfo(ACC, params={"instruments": "EUR_USD"}))["time"] for _ in range(3)]
    assert times == ["2024-03-05T10:03:00.000000000Z", "2024-03-05T10:04:00.000000000Z", "2024-03-05T10:05:00.000000000Z"]


def test_accelerated_clock(make_sim):
    server, api = make_sim("10:00", speed="x240")  # four simulated minutes per second
    time.sleep(0.6)
    now = pd.Timestamp(api.request(pricing.PricingInfo(ACC, params={"instruments": "EUR_USD"}))["time"])
    assert pd.Timedelta(minutes=2) <= now - T0 <= pd.Timedelta(minutes=6)


def test_admin_endpoints_over_http(make_sim):
    server, api = make_sim("10:02")
    auth = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    assert requests.post(f"{server.url}/admin/clock/advance", json={"bars": 2}, headers=auth).json()["time"] \
        == "2024-03-05T10:04:00.000000000Z"
    assert requests.get(f"{server.url}/admin/clock", headers={"Authorization": "Bearer nope"}).status_code == 401
    requests.post(f"{server.url}/admin/faults", json={"kind": "status", "status": 503, "count": 1}, headers=auth)
    r = requests.get(f"{server.url}/v3/accounts", headers=auth)
    assert r.status_code == 503 and "errorMessage" in r.json()
    assert requests.get(f"{server.url}/v3/accounts", headers=auth).status_code == 200


def test_lost_answer_fault_processes_the_order_then_answers_an_error(make_sim):
    from oandapyV20.exceptions import V20Error

    server, api = make_sim("10:02")
    server.sim.faults.add(Fault(kind="lost_answer", path="/orders", status=504))
    with pytest.raises(V20Error) as err:
        place(api, instrument="EUR_USD", units="1000", clientExtensions={"id": "lost-1"})
    assert err.value.code == 504
    # OANDA did it all the same: the order is filled and findable by its client id and in the history
    found = api.request(orders.OrderDetails(ACC, "@lost-1"))["order"]
    assert found["state"] == "FILLED"
    txns = api.request(transactions.TransactionsSinceID(ACC, params={"id": 2}))["transactions"]
    assert [t["type"] for t in txns] == ["MARKET_ORDER", "ORDER_FILL"]
    assert server.sim.stats["answers_lost"] == 1
    assert place(api, instrument="EUR_USD", units="1000")["orderFillTransaction"]  # next answer arrives


def test_margin_is_checked_as_oanda_does(make_sim):
    server, api = make_sim("10:02", balance=1_000.0, margin_rate=0.02)  # 1,000 USD buys ≤ ~45,000 EUR_USD
    r = place(api, instrument="EUR_USD", units="100000000")  # the most one order may carry
    assert r["orderCancelTransaction"]["reason"] == "INSUFFICIENT_MARGIN" and "orderFillTransaction" not in r
    assert place(api, instrument="EUR_USD", units="40000")["orderFillTransaction"]["units"] == "40000"
    r = place(api, instrument="EUR_USD", units="10000")  # 50,000 × 1.1 × 2 % = 1,100 > NAV
    assert r["orderCancelTransaction"]["reason"] == "INSUFFICIENT_MARGIN"
    assert place(api, instrument="EUR_USD", units="-75000")["orderFillTransaction"]  # reverses: 35,000 short ok
    # a pending order that would overdraw the margin is cancelled when it triggers
    r = place(api, type="LIMIT", instrument="EUR_USD", units="-30000", price="1.10100")
    assert "orderFillTransaction" not in r and "orderCancelTransaction" not in r
    server.sim.advance(1)  # bar 10:02 reaches 1.1020: the limit triggers
    cancels = [t for t in server.sim.account.transactions if t["type"] == "ORDER_CANCEL"]
    assert cancels[-1]["reason"] == "INSUFFICIENT_MARGIN" and cancels[-1]["orderID"] == r["orderCreateTransaction"]["id"]
    assert float(summary(api)["marginUsed"]) <= float(summary(api)["NAV"])


def test_a_pending_client_id_cannot_be_used_twice_but_a_filled_one_can(make_sim):
    from oandapyV20.exceptions import V20Error

    server, api = make_sim("10:02")
    place(api, type="LIMIT", instrument="EUR_USD", units="1000", price="1.05000", clientExtensions={"id": "c1"})
    with pytest.raises(V20Error) as err:
        place(api, type="LIMIT", instrument="EUR_USD", units="1000", price="1.05000", clientExtensions={"id": "c1"})
    assert err.value.code == 400 and "CLIENT_ORDER_ID_ALREADY_EXISTS" in err.value.msg
    place(api, instrument="EUR_USD", units="1000", clientExtensions={"id": "m1"})
    assert place(api, instrument="EUR_USD", units="1000", clientExtensions={"id": "m1"})["orderFillTransaction"]
