"""OANDA market data: candles (history and backfill) and the pricing stream turned into live bars.

Candle payloads are parsed and validated by :mod:`.candles` (downloads use the same parser).

:class:`PriceHub` owns one pricing stream for all instruments in a background thread. Prices and
heartbeats are the clock: once a price (or heartbeat) is stamped past the end of the next bar,
that bar is complete and the hub fetches the completed candles since the last bar it delivered.
Bars therefore come from OANDA's candles (the same source backtests use, so live bars equal
backtest bars), and a reconnect after a dropped or silent stream needs no special backfill: the
first message after it fetches every bar missed meanwhile.

:class:`LiveFeed` is the backtrader data feed reading the hub's per-instrument queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import backtrader as bt
import oandapyV20.endpoints.pricing as pricing_ep
import pandas as pd
import requests
from oandapyV20.exceptions import V20Error
from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential

from mbats.errors import ConfigError, MbatsError
from mbats.venues.oanda.candles import fetch_candles
from mbats.venues.oanda.client import OandaClient
from mbats.secmaster.granularity import backtrader_timeframe, bar_length

log = logging.getLogger(__name__)


@dataclass
class Bar:
    ts: pd.Timestamp  # open time, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    live: bool  # False: warm-up (orders are not sent), True: the strategy trades on it


class _StreamEnded(Exception):
    """The stream closed or fell silent; reconnect."""


@dataclass
class HubStats:
    connects: int = 0
    reconnects: int = 0
    heartbeats: int = 0
    prices: int = 0
    candle_requests: int = 0
    bars: dict[str, int] = field(default_factory=dict)


class PriceHub:
    """Prices in, complete bars out (one queue per instrument)."""

    def __init__(self, client: OandaClient, instruments: list[str], granularity: str,
                 sim_step: bool = False) -> None:
        self.client = client  # REST for candles; its stream_api() for the price stream
        self.instruments, self.granularity = list(instruments), granularity
        self.step = bar_length(granularity)
        self.heartbeat_timeout = client.config.stream_timeout_seconds
        self.sim_step = sim_step
        self.queues: dict[str, queue.Queue[Bar]] = {i: queue.Queue() for i in self.instruments}
        self.last_bar: dict[str, pd.Timestamp | None] = {i: None for i in self.instruments}
        self.quotes: dict[str, tuple[float, float]] = {}
        # OANDA's quote -> account currency factors (for a positive, a negative amount) from the latest price
        self.home_factors: dict[str, tuple[float, float]] = {}
        self.market_time: pd.Timestamp | None = None
        self.live_after: pd.Timestamp | None = None  # bars after this are live even if backfilled
        # restart after downtime: bars up to the newest complete one at start are history, except the
        # bar that was being processed when the runner died (re-decided; its orders are adopted, not resent)
        self.downtime_is_history = False
        self.history_until: dict[str, pd.Timestamp] = {}
        self.in_flight: pd.Timestamp | None = None
        self.stats = HubStats(bars={i: 0 for i in self.instruments})
        # what was queued, per (instrument, phase): backfill at start, then bars completed on the stream
        self.phase = "backfill"
        self.delivered: dict[tuple[str, str], dict] = {}
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._advanced_for: pd.Timestamp | None = None
        self._next_check = 0.0

    # --- candles --------------------------------------------------------------------------
    def _candles(self, instrument: str, **params) -> pd.DataFrame:
        self.stats.candle_requests += 1
        frame = fetch_candles(self.client, instrument, self.granularity, **params).mid
        return frame.set_index(pd.DatetimeIndex(frame["ts"])) if len(frame) else frame

    def backfill(self, count: int) -> None:
        """Queue the last ``count`` complete bars of every instrument (warm-up, or live after ``live_after``)."""
        self.phase = "backfill"
        for instrument in self.instruments:
            frame = self._candles(instrument, count=max(1, min(count + 1, 5000)))
            if self.downtime_is_history and len(frame):
                self.history_until[instrument] = frame.index[-1]
            self._enqueue(instrument, frame.tail(count) if count else frame.iloc[0:0])
            if self.last_bar[instrument] is None and len(frame):  # nothing queued: start after the newest bar
                self.last_bar[instrument] = frame.index[-1]
        self.phase = "stream"

    def _enqueue(self, instrument: str, frame: pd.DataFrame) -> int:
        last = self.last_bar[instrument]
        n = 0
        for ts, row in frame.iterrows():
            if last is not None and ts <= last:
                continue
            live = self.live_after is not None and ts > self.live_after
            if live and instrument in self.history_until and ts <= self.history_until[instrument]:
                live = ts == self.in_flight  # closed while the runner was down: history, not a signal
            self.queues[instrument].put(Bar(ts, row["open"], row["high"], row["low"], row["close"],
                                            float(row["volume"]), live))
            last = ts
            n += 1
        if n:
            seen = self.delivered.setdefault((instrument, self.phase), {"bars": 0, "first": frame.index[-n]})
            seen.update(bars=seen["bars"] + n, last=last)
        self.last_bar[instrument] = last
        self.stats.bars[instrument] += n
        return n

    def fetch_completed(self) -> int:
        """Queue every bar completed since the last one queued, for all instruments (same moment)."""
        with self._lock:
            n = 0
            for instrument in self.instruments:
                last = self.last_bar[instrument]
                params = {"count": 5000} if last is None else {
                    "from": last.isoformat().replace("+00:00", "Z"), "includeFirst": "false", "count": 5000}
                n += self._enqueue(instrument, self._candles(instrument, **params))
            return n

    def _maybe_fetch(self, stamp: pd.Timestamp) -> None:
        self.market_time = stamp if self.market_time is None else max(self.market_time, stamp)
        due = min((b for b in self.last_bar.values() if b is not None), default=None)
        if due is not None and stamp < due + 2 * self.step:
            return  # the bar after the last one has not closed yet
        if time.monotonic() < self._next_check:
            return
        if self.fetch_completed() == 0:  # e.g. a weekend or an H2+ alignment: ask again in a second
            self._next_check = time.monotonic() + 1.0

    # --- stream ---------------------------------------------------------------------------
    def start(self) -> "PriceHub":
        self._thread = threading.Thread(target=self._run, name="mbats-live-prices", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_timeout + 5)

    def _run(self) -> None:
        retrying = Retrying(retry=retry_if_exception_type((_StreamEnded, requests.RequestException, OSError)),
                            wait=wait_exponential(multiplier=0.1, max=5.0), stop=stop_never,
                            before_sleep=self._on_reconnect, reraise=True)
        try:
            retrying(self._stream_once)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            if not self.stopped.is_set():
                self.error = exc
                self.stopped.set()

    def _on_reconnect(self, state) -> None:
        self.stats.reconnects += 1
        log.warning("price stream lost (%s); reconnecting (attempt %d)", state.outcome.exception(),
                    state.attempt_number)

    def _stream_once(self) -> None:
        if self.stopped.is_set():
            return
        account = self.client.require_account()
        endpoint = pricing_ep.PricingStream(account, params={"instruments": ",".join(self.instruments)})
        self.stats.connects += 1
        try:
            for msg in self.client.stream_api().request(endpoint):
                if self.stopped.is_set():
                    return
                self._handle(msg)
        except V20Error as exc:
            if exc.code in (401, 403):
                raise ConfigError(f"OANDA refused the price stream (HTTP {exc.code}); check MBATS_OANDA_TOKEN "
                                  "and MBATS_OANDA_ACCOUNT_ID") from None
            if exc.code == 429 or exc.code >= 500:
                raise _StreamEnded(f"HTTP {exc.code}") from None
            raise MbatsError(f"OANDA price stream rejected (HTTP {exc.code}): {exc.msg}") from None
        if not self.stopped.is_set():
            raise _StreamEnded("stream closed by the server")

    def _handle(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "HEARTBEAT":
            self.stats.heartbeats += 1
        elif kind == "PRICE":
            self.stats.prices += 1
            try:
                self.quotes[msg["instrument"]] = (float(msg["bids"][0]["price"]), float(msg["asks"][0]["price"]))
            except (KeyError, IndexError, ValueError, TypeError):
                log.warning("ignoring malformed price message %r", msg)
                return
            factors = msg.get("quoteHomeConversionFactors")
            if factors:
                try:
                    self.home_factors[msg["instrument"]] = (float(factors["positiveUnits"]),
                                                            float(factors["negativeUnits"]))
                except (KeyError, ValueError, TypeError):
                    pass  # unrealised P&L then needs the session's own bars to convert
        else:
            return
        if "time" in msg:
            self._maybe_fetch(pd.Timestamp(msg["time"]))

    # --- simulator pacing -----------------------------------------------------------------
    def advance_sim(self, after: pd.Timestamp) -> None:
        """Step the simulator's replay clock once per processed bar (``--sim-step``)."""
        if not self.sim_step or self._advanced_for == after:
            return
        self._advanced_for = after
        self.client.advance_sim_clock(1)

    def data_sources(self) -> list[dict]:
        """Where this session's bars came from, per instrument: the start-up backfill and the live stream.

        Both are OANDA candles fetched directly (no security-master load behind them), so each entry
        names the venue, the environment and the range and count of bars queued; the stream entry
        also counts the price messages and reconnects that drove it.
        """
        from mbats.venues.oanda.instruments import source_of, vendor_of

        out = []
        for instrument in self.instruments:
            for phase in ("backfill", "stream"):
                seen = self.delivered.get((instrument, phase), {"bars": 0})
                entry = {"instrument": instrument, "kind": f"live-{phase}", "load_id": None,
                         "vendor": vendor_of(self.client), "is_synthetic": self.client.config.is_sim,
                         "source": source_of(self.client), "granularity": self.granularity, "bars": seen["bars"],
                         "first": seen["first"].isoformat() if "first" in seen else None,
                         "last": seen["last"].isoformat() if "last" in seen else None}
                if phase == "stream":
                    entry.update(endpoint="pricing/stream + candles", prices=self.stats.prices,
                                 reconnects=self.stats.reconnects)
                out.append(entry)
        return out

    def mid(self, instrument: str) -> float | None:
        q = self.quotes.get(instrument)
        return (q[0] + q[1]) / 2 if q else None


class LiveFeed(bt.feed.DataBase):
    """A backtrader feed over a :class:`PriceHub` queue: warm-up bars (DELAYED), then LIVE ones."""

    params = (("hub", None), ("broker", None), ("qcheck", 0.5), ("until", None), ("max_bars", None))

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return not self.p.hub.queues[self._name].empty()

    def start(self) -> None:
        super().start()
        self.live_bars = 0
        self.last_ts: pd.Timestamp | None = None
        self._state = None
        self.put_notification(self.DELAYED)
        self._state = self.DELAYED
        self.bar_is_live = False
        if self.p.broker is not None:
            self.p.broker.data_started(self)

    def session_over(self) -> bool:
        hub: PriceHub = self.p.hub
        if hub.stopped.is_set():
            return True
        if self.p.max_bars is not None and self.live_bars >= self.p.max_bars:
            return True
        until = self.p.until
        if until is not None and self.last_ts is not None and self._state == self.LIVE:
            return self.last_ts + hub.step >= pd.Timestamp(until)
        return False

    def _load(self) -> bool | None:
        hub: PriceHub = self.p.hub
        if self.session_over():
            return False
        q = hub.queues[self._name]
        if q.empty() and self.last_ts is not None:
            hub.advance_sim(self.last_ts)  # the strategy has seen the last bar: let the replay move on
        try:
            bar = q.get(timeout=max(self._qcheck, 0.05))
        except queue.Empty:
            return None
        if bar.live and self._state != self.LIVE:
            self._state = self.LIVE
            self.put_notification(self.LIVE)
        self.lines.datetime[0] = bt.date2num(bar.ts.tz_convert("UTC").tz_localize(None).to_pydatetime())
        self.lines.open[0], self.lines.high[0], self.lines.low[0] = bar.open, bar.high, bar.low
        self.lines.close[0], self.lines.volume[0], self.lines.openinterest[0] = bar.close, bar.volume, 0.0
        self.last_ts = bar.ts
        self.bar_is_live = bar.live
        if bar.live:
            self.live_bars += 1
        return True


def make_live_feed(hub: PriceHub, instrument: str, broker=None, until=None, max_bars: int | None = None) -> LiveFeed:
    timeframe, compression = backtrader_timeframe(hub.granularity)
    return LiveFeed(hub=hub, broker=broker, name=instrument, timeframe=timeframe, compression=compression,
                    until=until, max_bars=max_bars)
