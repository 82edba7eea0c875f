"""The simulator's state: market, account, replay clock, faults and request counters, behind one lock."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from mbats.errors import MbatsError
from mbats.secmaster.financing import FinancingTerms, rollovers
from mbats.sim.broker import Account
from mbats.sim.faults import FaultPlan
from mbats.sim.market import Market, parse_time

DEFAULT_TOKEN = "sim-token"
DEFAULT_ACCOUNT = "101-001-0000000-001"


def parse_speed(value: str | float | None) -> tuple[str, float]:
    """``manual`` | ``step`` | ``realtime`` | ``x60`` / ``60`` → (mode, factor)."""
    if value is None:
        return "manual", 0.0
    text = str(value).strip().lower()
    if text in ("manual", "step"):
        return text, 0.0
    if text in ("realtime", "real-time", "1", "x1"):
        return "speed", 1.0
    try:
        factor = float(text.lstrip("x"))
    except ValueError:
        raise MbatsError(f"speed '{value}' is not manual, step, realtime or a factor like x60") from None
    if factor <= 0:
        raise MbatsError("speed factor must be positive")
    return "speed", factor


@dataclass
class SimConfig:
    """How the simulator replays and what account it offers."""

    token: str = DEFAULT_TOKEN
    account_id: str = DEFAULT_ACCOUNT
    balance: float = 100_000.0
    currency: str = "USD"
    margin_rate: float = 0.02
    spread_pips: float | dict = 1.0
    speed: str | float | None = "manual"  # manual | step | realtime | x<N>
    start: datetime | str | None = None  # clock start; default: data end (manual) or data start (others)
    heartbeat_seconds: float = 5.0
    stream_poll_seconds: float = 0.05
    max_requests_per_second: float | None = 120.0  # OANDA's limit; beyond it answers 429
    financing: dict[str, FinancingTerms] | None = None  # per instrument; None: the illustrative table
    extra: dict = field(default_factory=dict)


class Simulator:
    """Market + account + clock. Every public method takes the lock, so HTTP threads may share it."""

    def __init__(self, bars: dict[str, pd.DataFrame], granularity: str = "M1", config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.market = Market(bars, granularity, self.config.spread_pips)
        self.mode, self.factor = parse_speed(self.config.speed)
        if self.config.start is not None:
            self.market.now = parse_time(str(pd.Timestamp(self.config.start).isoformat()))
        elif self.mode != "manual":
            self.market.now = self.market.start
        self.lock = threading.RLock()
        self.account = Account(self.market, self.config.account_id, self.config.balance, self.config.currency,
                               self.config.margin_rate, terms=self.config.financing)
        self.faults = FaultPlan()
        self.stats: Counter = Counter()
        self.stopping = threading.Event()
        self._wall0, self._sim0 = time.monotonic(), self.market.now
        self._recent: deque[float] = deque()

    # --- clock ----------------------------------------------------------------------------
    @property
    def now(self) -> int:
        return self.market.now

    def sync(self) -> None:
        """In real-time / ×N mode, move the clock to where the wall clock says it should be."""
        if self.mode != "speed":
            return
        with self.lock:
            target = self._sim0 + int((time.monotonic() - self._wall0) * self.factor * 1e9)
            self._move_to(min(target, self.market.end))

    def advance(self, bars: int = 1) -> int:
        """Complete the next ``bars`` base bars (processing orders bar by bar); return the new time."""
        with self.lock:
            self._move_to(self.market.next_bar_end(bars))
            return self.market.now

    def advance_to(self, when: datetime | str | int) -> int:
        with self.lock:
            target = when if isinstance(when, int) else parse_time(str(pd.Timestamp(when).isoformat()))
            self._move_to(target)
            return self.market.now

    def set_clock(self, when: datetime | str | int) -> int:
        """Put the clock anywhere, backwards too; only while the account holds no orders or trades."""
        with self.lock:
            if self.account.orders or self.account.trades:
                raise MbatsError("the replay clock can only move backwards before any order is placed")
            self.market.now = when if isinstance(when, int) else parse_time(str(pd.Timestamp(when).isoformat()))
            self._wall0, self._sim0 = time.monotonic(), self.market.now
            return self.market.now

    def _move_to(self, target: int) -> None:
        old = self.market.now
        if target <= old:
            return
        busy = any(o.state == "PENDING" for o in self.account.orders.values()) or self.account.open_trades()
        if busy:
            # bars completing and 17:00 New York rollovers, in time order (a bar ending at 17:00 first)
            events = [(t_open + self.market.step, 0, symbol, i)
                      for t_open, symbol, i in self.market.completed_between(old, target)]
            events += [(int(ts.value), 1, "", weekday) for ts, weekday in
                       rollovers(pd.Timestamp(old, tz="UTC"), pd.Timestamp(target, tz="UTC")).itertuples(index=False)]
            for when, kind, symbol, i in sorted(events):
                self.market.now = when  # value the account as of each bar's close
                if kind == 0:
                    self.account.on_bar(symbol, i)
                else:
                    self.account.rollover(when, i)
                if self.account.closeout_due():
                    self.account.margin_closeout()
        self.market.now = target
        if self.mode == "speed":  # keep wall-clock pacing anchored to manual jumps
            self._wall0, self._sim0 = time.monotonic(), target

    def on_pricing_request(self) -> None:
        """``step`` mode: each pricing poll (or stream message) moves the replay on by one bar."""
        if self.mode == "step":
            self.advance(1)
        else:
            self.sync()

    # --- rate limit -----------------------------------------------------------------------
    def over_rate_limit(self) -> bool:
        limit = self.config.max_requests_per_second
        if not limit:
            return False
        now = time.monotonic()
        with self.lock:
            while self._recent and now - self._recent[0] > 1.0:
                self._recent.popleft()
            if len(self._recent) >= limit:
                return True
            self._recent.append(now)
            return False
