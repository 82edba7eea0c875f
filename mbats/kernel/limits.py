"""Pre-trade risk limits and the daily-loss kill switch, the same in backtests and live sessions.

Backtests apply the pre-trade checks through :class:`mbats.backtest.limits.LimitedBroker`; live
sessions through :mod:`mbats.live.session`.

A breach blocks the order (the strategy gets it back Rejected); the daily-loss breach trips the
kill switch: pending orders cancelled, positions closed, the session stopped. The tripped state
and the day's NAV baseline are kept in the risk DB (``live_kill_switch``, via ``state``), so a
restart the same day keeps the same baseline, and a tripped account stays stopped until
``mbats live reset-kill-switch``. The loss check runs when a bar arrives, before the strategy
sees it, so no order goes out on the bar that breached. Every breach is
written to ``risk_events`` and announced through :mod:`mbats.alerts` (apprise URLs and the legacy
JSON webhook; a receiver that is down is logged, never allowed to stop risk handling).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from mbats.config import Settings

log = logging.getLogger(__name__)


@dataclass
class RiskLimits:
    """Pre-trade limits; ``None`` switches a rule off."""

    max_units: float | None = None  # per instrument, absolute units after the order
    max_gross_exposure: float | None = None  # Σ |units| × price in account currency
    max_orders_per_minute: int | None = None
    max_daily_loss: float | None = None  # account currency, from the day's first NAV
    webhook_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "RiskLimits":
        webhook = settings.live_risk_webhook_url
        return cls(settings.live_max_units, settings.live_max_gross_exposure, settings.live_max_orders_per_minute,
                   settings.live_max_daily_loss, webhook.get_secret_value() if webhook else None)

    def public(self) -> dict:
        """The limits as stored in runs.broker: the webhook URL (a secret) only as host and hash."""
        from mbats.redact import url_ref

        return {**vars(self), "webhook_url": url_ref(self.webhook_url)}


@dataclass
class Breach:
    rule: str
    instrument: str | None
    detail: str
    action: str  # blocked | kill_switch
    ts: datetime


def _notional(instrument: str, units: float, mid: float, home: str) -> float:
    """|units| in the account currency: quote = home → × price; base = home → units; else × price."""
    base, _, quote = instrument.partition("_")
    if base == home:
        return abs(units)
    return abs(units) * mid


class RiskManager:
    def __init__(self, limits: RiskLimits, home_currency: str = "USD",
                 record: Callable[[Breach], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 state=None, alerter=None) -> None:
        self.limits, self.home = limits, home_currency
        self.record = record
        if alerter is None and limits.webhook_url:  # the legacy webhook alone (e.g. limits built in code)
            from mbats.alerts import Alerter

            alerter = Alerter(risk_webhook=limits.webhook_url)
        self.alerter = alerter  # mbats.alerts.Alerter: every breach is announced
        self.clock = clock
        self.sent: collections.deque[float] = collections.deque()
        self.day: str | None = None
        self.day_start_nav: float | None = None
        self.tripped = False
        self.breaches: list[Breach] = []
        self.run_id: int | None = None
        self.state = state  # a KillSwitchStore (mbats.risk.live) or None
        if state is not None:
            saved = state.load()
            self.tripped = bool(saved["tripped"])
            if saved["day"] is not None and saved["day_start_nav"] is not None:
                self.day, self.day_start_nav = saved["day"].isoformat(), float(saved["day_start_nav"])

    # --- pre-trade ----------------------------------------------------------------------------
    def check_order(self, instrument: str, units: int, positions: dict, mid_of: Callable[[str], float | None],
                    client_id: str = "", pending: dict[str, tuple[float, float]] | None = None) -> str | None:
        """None if the order may go out, else the reason it is blocked (already recorded).

        Limits hold for the worst case: the position if every pending entry order (``pending``:
        instrument → (units to buy, units to sell)) and this one filled, on the heavier side.
        """
        lim = self.limits
        if self.tripped:
            return self._breach("kill_switch", instrument, f"order {client_id} after the kill switch tripped",
                                "blocked")
        pending = pending or {}

        def worst(name: str) -> float:
            held = positions[name].size if name in positions else 0.0
            buy, sell = pending.get(name, (0.0, 0.0))
            if name == instrument:
                buy, sell = buy + max(units, 0), sell + min(units, 0)
            return max(held + buy, held + sell, key=abs)

        after = worst(instrument)
        waiting = sum(abs(x) for x in pending.get(instrument, (0.0, 0.0)))
        note = f" with {waiting:,.0f} units in pending orders" if waiting else ""
        if lim.max_units is not None and abs(after) > lim.max_units:
            return self._breach("max_units", instrument,
                                f"order {client_id} {units:+d} could hold {after:+.0f} units{note} "
                                f"(limit {lim.max_units:g})", "blocked")
        if lim.max_gross_exposure is not None:
            gross = 0.0
            for name in set(positions) | set(pending) | {instrument}:
                size = worst(name)
                if size:
                    mid = mid_of(name)
                    gross += _notional(name, size, mid if mid is not None else 0.0, self.home)
            if gross > lim.max_gross_exposure:
                return self._breach("max_gross_exposure", instrument,
                                    f"order {client_id} {units:+d} could make gross exposure {gross:,.0f} {self.home}{note} "
                                    f"(limit {lim.max_gross_exposure:,.0f})", "blocked")
        if lim.max_orders_per_minute is not None:
            now = self.clock()
            while self.sent and now - self.sent[0] >= 60.0:
                self.sent.popleft()
            if len(self.sent) >= lim.max_orders_per_minute:
                return self._breach("max_orders_per_minute", instrument,
                                    f"order {client_id}: {len(self.sent)} orders in the last minute "
                                    f"(limit {lim.max_orders_per_minute})", "blocked")
        return None

    def note_submitted(self) -> None:
        self.sent.append(self.clock())

    # --- per bar ------------------------------------------------------------------------------
    def check_daily_loss(self, nav: float, bar_time: datetime) -> Breach | None:
        """Track the day's first NAV (UTC day of the bar); a loss beyond the limit trips the kill switch."""
        day = bar_time.astimezone(timezone.utc).date()
        if day.isoformat() != self.day:
            self.day, self.day_start_nav = day.isoformat(), nav
            if self.state is not None:
                self.state.save_baseline(day, nav)
        loss = (self.day_start_nav or nav) - nav
        lim = self.limits.max_daily_loss
        if lim is None or self.tripped or loss < lim:
            return None
        self.tripped = True
        detail = (f"NAV {nav:,.2f} is {loss:,.2f} below the day's start {self.day_start_nav:,.2f} "
                  f"(limit {lim:,.2f}): flattening and stopping")
        if self.state is not None:  # first, so a crash right after still leaves the account stopped
            self.state.trip(detail, self.run_id)
        self._breach("max_daily_loss", None, detail, "kill_switch")
        return self.breaches[-1]

    # --- reporting ----------------------------------------------------------------------------
    def event(self, rule: str, instrument: str | None, detail: str, action: str) -> str:
        """Record and announce a risk event found elsewhere (e.g. position drift)."""
        return self._breach(rule, instrument, detail, action)

    def _breach(self, rule: str, instrument: str | None, detail: str, action: str) -> str:
        breach = Breach(rule, instrument, detail, action, datetime.now(timezone.utc))
        self.breaches.append(breach)
        log.warning("risk %s (%s): %s", rule, action, detail)
        if self.record is not None:
            self.record(breach)
        if self.alerter is not None:
            from mbats.alerts import breach_alert

            self.alerter.send(breach_alert(breach, self.run_id))
        return f"risk limit {rule}: {detail}"
