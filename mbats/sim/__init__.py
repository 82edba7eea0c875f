"""An OANDA v20 simulator: market replay behind the part of the v20 REST protocol MBATS uses.

The real ``oandapyV20`` client talks to it unchanged (environment ``sim`` in
``oandapyV20.oandapyV20.TRADING_ENVIRONMENTS``, see :func:`mbats.venues.oanda.client.register_environment`).

Endpoints
    ``GET /v3/instruments/{i}/candles`` (granularity, count ≤ 5,000, from/to in RFC 3339 or UNIX
    seconds, price = any of M/B/A, includeFirst; smoothing and alignment options are ignored:
    S5 … H1 use the UTC grid, H2 … M the 17:00 New York trading day) ·
    ``/v3/accounts``, ``/{id}``, ``/summary``, ``/instruments``, ``/changes?sinceTransactionID`` ·
    ``/pricing`` (polling) and ``/pricing/stream`` (chunked JSON lines, a snapshot first, then a line
    per price change, ``HEARTBEAT`` every ``heartbeat_seconds`` when quiet) ·
    ``/orders`` (MARKET, LIMIT, STOP with takeProfitOnFill, stopLossOnFill (price or distance),
    trailingStopLossOnFill, clientExtensions, tradeClientExtensions, priceBound, GTC/GTD/FOK/IOC),
    ``/pendingOrders``, ``/orders/{id or @clientID}``, ``/orders/{id}/cancel`` · ``/trades``,
    ``/openTrades``, ``/trades/{id}``, ``/trades/{id}/close`` · ``/positions``, ``/openPositions``,
    ``/positions/{i}``, ``/positions/{i}/close`` · ``/transactions``, ``/transactions/sinceid``,
    ``/transactions/idrange``, ``/transactions/{id}``.

Errors
    Like OANDA: an HTTP status and a JSON body with ``errorMessage`` (and ``errorCode`` for order
    errors). A wrong or missing Bearer token → 401; another account id → 403; more than
    ``max_requests_per_second`` (120, OANDA's limit) → 429.

Replay
    Bars of one base granularity (the security master, a CSV file, or a seeded random walk on the
    FX trading week) are replayed against a clock ``now``. A bar is complete once it has closed
    (``open + length <= now``); the bar containing ``now`` has just opened, so the current mid is
    its open (between bars, e.g. at weekends, the last close). Bid/ask = mid ∓ half the configured
    spread (in pips). Coarser candles are aggregated from the base bars. Speeds:

    - ``manual`` (default): the clock moves only when told — ``Simulator.advance(bars)``,
      ``advance_to(time)`` or ``POST /admin/clock/advance {"bars": n} | {"to": time}``; it starts at
      the end of the data (everything downloadable) unless ``start`` is given;
    - ``step``: as fast as clients ask — every pricing poll / stream message moves on one bar;
    - ``realtime`` or ``x<N>``: the clock follows the wall clock, N times faster.

Account
    One account (``account_id``, home currency ``currency``, ``balance``, ``margin_rate``). Market
    orders fill at once at ask (buy) / bid (sell). Units against an open position close trades
    FIFO (netting, not hedging). LIMIT / STOP entries and each trade's TP / SL / trailing SL are
    checked bar by bar as bars complete: a bar opening beyond a stop fills at the open (gap),
    otherwise at the order price; if stop and target both lie inside one bar the stop wins; a
    trailing stop moves after each bar. Trades filled inside a bar are checked from the next bar.
    P&L converts to the home currency at the current mid of the quote/home pair (it must be
    replayed for crosses). Unrealized P&L values longs at bid, shorts at ask; margin = |units| ×
    mid × margin rate. An order whose fill would push the margin used past the NAV is cancelled
    with reason ``INSUFFICIENT_MARGIN`` (market orders at once, pending ones when triggered), as
    OANDA does; a second *pending* order with a client id already pending is refused
    (``CLIENT_ORDER_ID_ALREADY_EXISTS``). Financing: at 17:00 New York every trade opened before it is
    charged or paid |units| x mid x its side's annual rate x days charged / 365 (Wednesday 3,
    weekends 0) in a ``DAILY_FINANCING`` transaction, from per-instrument terms (``SimConfig.financing``,
    else the illustrative table in :mod:`mbats.secmaster.financing`), also served as each instrument's
    ``financing`` and ``marginRate``. Margin uses the larger of the account's and the instrument's
    rate; once the NAV is at or below half the margin used, every position is closed out
    (``MARGIN_CLOSEOUT``). **Commissions, dividends and guaranteed stops are not simulated (always
    0).** The transactions stream is not implemented.

Faults (tests)
    :class:`mbats.sim.faults.Fault` via ``Simulator.faults.add(...)`` or ``POST /admin/faults``:
    the next N matching requests answer 429/5xx, are delayed, carry a malformed candle, or a
    pricing stream is cut after K messages, or (``lost_answer``) an order/close request is processed
    and its answer replaced by an error, as when the acknowledgement is lost on the way back. ``GET /admin/stats`` counts requests.

Running it
    :func:`start_simulator` / :class:`SimServer` (background thread, ``port=0`` for a free port,
    ``.stop()``), or ``mbats sim serve`` in the foreground.
"""

from mbats.sim.data import csv_bars, secmaster_bars, synthetic_bars
from mbats.sim.faults import Fault
from mbats.sim.server import SimServer, start_simulator
from mbats.sim.simulator import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, Simulator, parse_speed

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_TOKEN", "Fault", "SimConfig", "SimServer", "Simulator", "csv_bars",
           "parse_speed", "secmaster_bars", "start_simulator", "synthetic_bars"]
