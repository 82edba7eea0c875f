"""Pre-trade risk limits in backtests: the kernel's RiskManager checks, applied to backtrader's broker.

The same rules that guard a live account (``--max-units``, ``--max-gross-exposure``, counted at the
worst case where every pending entry order fills) decide here whether an order is accepted, so a
backtest shows what the limits would have blocked. A blocked order comes back to the strategy as
Rejected, its bracket legs with it, and the breach is kept for the run's ``risk_events``.
"""

from __future__ import annotations

import backtrader as bt

from mbats.kernel.limits import RiskLimits, RiskManager


class LimitedBroker(bt.brokers.BackBroker):
    """backtrader's simulated broker, with every new entry order checked against the limits first."""

    def __init__(self, limits: RiskLimits, account_currency: str = "USD") -> None:
        super().__init__()
        self.risk = RiskManager(limits, account_currency, record=self._at_bar)
        self._bar_time = None

    def _live_orders(self) -> list:
        """Orders still working: submitted or accepted (not every order of the run, which grows)."""
        return [o for o in (*self.submitted, *self.pending) if o.alive()]

    def _pending_entries(self) -> dict[str, tuple[float, float]]:
        pending: dict[str, list[float]] = {}
        for order in self._live_orders():
            if order.parent is None and order.status != bt.Order.Created:
                side = pending.setdefault(order.data._name, [0.0, 0.0])
                side[0 if order.isbuy() else 1] += order.size - order.executed.size  # signed: sells < 0
        return {name: (buy, sell) for name, (buy, sell) in pending.items()}

    def transmit(self, order, check=True):
        parent = order.parent
        if parent is not None and parent.status == bt.Order.Rejected:
            return self._reject(order)  # a bracket leg of a blocked entry never goes out
        if parent is None:
            self._bar_time = order.data.datetime.datetime(0)
            positions = {d._name: self.getposition(d) for d in self.positions if self.getposition(d).size}
            units = int(order.size if order.isbuy() else -abs(order.size))
            feeds = {d._name: d for d in [*self.positions, *(o.data for o in self._live_orders()), order.data]}
            reason = self.risk.check_order(order.data._name, units, positions,
                                           lambda name: float(feeds[name].close[0]) if name in feeds else None,
                                           str(order.ref), self._pending_entries())
            if reason is not None:
                return self._reject(order)
        return super().transmit(order, check=check)

    def _at_bar(self, breach) -> None:
        breach.ts = self._bar_time.replace(tzinfo=breach.ts.tzinfo)  # the bar's time, not the wall clock

    def _reject(self, order):
        order.reject(self)
        self.orders.append(order)
        self.notify(order)
        return order

    def risk_events(self) -> list[dict]:
        """The breaches as ``risk_events`` rows (ts is the bar the order was placed on)."""
        return [{"ts": b.ts, "rule": b.rule, "instrument": b.instrument, "detail": b.detail, "action": b.action}
                for b in self.risk.breaches]
