"""An analyzer that records what the risk database stores: orders, fills, trades, equity.

It is the only observer a platform run adds, so backtrader's default observers can stay off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import backtrader as bt

_ORDER_TYPES = {bt.Order.Market: "market", bt.Order.Limit: "limit", bt.Order.Stop: "stop",
                bt.Order.StopLimit: "stop_limit", bt.Order.Close: "close", bt.Order.StopTrail: "trailing_stop"}


@dataclass
class _OpenTrade:
    ref: str
    instrument: str
    direction: str
    size: float
    entry_ts: object
    entry_price: float
    best: float
    worst: float


@dataclass
class Recording:
    orders: dict[str, dict] = field(default_factory=dict)
    fills: list[dict] = field(default_factory=list)
    trades: list[dict] = field(default_factory=list)
    equity: list[tuple] = field(default_factory=list)  # (bt datenum, cash, value)
    bars_in_market: int = 0
    bars: int = 0


class Recorder(bt.Analyzer):
    def start(self) -> None:
        self.rec = Recording()
        self._open: dict[str, _OpenTrade] = {}
        # next() runs on every bar: hold the broker and the line buffers it reads, not the line proxies
        self._broker = self.strategy.broker
        self._clock = self.data.lines.datetime
        self._ranges = [(data._name, data.lines.high, data.lines.low) for data in self.strategy.datas]
        self._bar_dt: tuple = (None, None)  # (bt datenum, its datetime) of the last order notification

    def notify_order(self, order: bt.Order) -> None:
        ref = str(order.ref)
        row = self.rec.orders.get(ref)
        if row is None:
            parent = getattr(order, "parent", None)
            row = self.rec.orders[ref] = {
                "order_ref": ref,
                "parent_ref": str(parent.ref) if parent is not None and parent is not order else None,
                "instrument": order.data._name,
                "created_at": bt.num2date(order.created.dt),
                "side": "buy" if order.isbuy() else "sell",
                "order_type": _ORDER_TYPES.get(order.exectype, str(order.exectype)),
                "size": abs(order.created.size),
                "price": order.created.price if order.exectype != bt.Order.Market else None,
            }
        row["status"] = order.getstatusname().lower()
        row["updated_at"] = self._bar_time() if len(self._clock) else row["created_at"]
        if order.status == order.Completed:
            self.rec.fills.append({
                "fill_id": len(self.rec.fills) + 1,
                "order_ref": ref,
                "instrument": order.data._name,
                "ts": bt.num2date(order.executed.dt),
                "size": order.executed.size,
                "price": order.executed.price,
                "commission": order.executed.comm,
            })

    def _bar_time(self):
        """bt.num2date of the bar's datetime, once per bar: an order is notified ~3 times in its bar."""
        num = self._clock[0]
        if self._bar_dt[0] != num:
            self._bar_dt = (num, bt.num2date(num))
        return self._bar_dt[1]

    def notify_trade(self, trade: bt.Trade) -> None:
        name = trade.data._name
        if trade.justopened:
            self._open[name] = _OpenTrade(
                ref=str(trade.ref), instrument=name, direction="long" if trade.size > 0 else "short",
                size=abs(trade.size), entry_ts=bt.num2date(trade.dtopen), entry_price=trade.price,
                best=trade.price, worst=trade.price,
            )
        elif trade.isclosed and name in self._open:
            opened = self._open.pop(name)
            sign = 1.0 if opened.direction == "long" else -1.0
            exit_price = opened.entry_price + sign * trade.pnl / opened.size if opened.size else None
            favourable = (opened.best - opened.entry_price) * sign
            adverse = (opened.worst - opened.entry_price) * sign
            self.rec.trades.append({
                "trade_ref": opened.ref,
                "instrument": name,
                "direction": opened.direction,
                "size": opened.size,
                "entry_ts": opened.entry_ts,
                "entry_price": opened.entry_price,
                "exit_ts": bt.num2date(trade.dtclose),
                "exit_price": exit_price,
                "pnl": trade.pnl,
                "pnl_net": trade.pnlcomm,
                "commission": trade.commission,
                "return_pct": 100.0 * sign * (exit_price / opened.entry_price - 1.0) if exit_price else None,
                "mfe_pct": 100.0 * max(favourable, 0.0) / opened.entry_price,
                "mae_pct": 100.0 * min(adverse, 0.0) / opened.entry_price,
                "bars_held": trade.barlen,
                "is_open": False,
            })
        elif trade.isopen and name in self._open:
            self._open[name].size = max(self._open[name].size, abs(trade.size))

    def next(self) -> None:
        rec, broker = self.rec, self._broker
        rec.equity.append((self._clock[0], broker.getcash(), broker.getvalue()))
        rec.bars += 1
        if self._open:
            rec.bars_in_market += 1
            for name, highs, lows in self._ranges:
                t = self._open.get(name)
                if t is None:
                    continue
                high, low = highs[0], lows[0]
                if t.direction == "long":
                    t.best, t.worst = max(t.best, high), min(t.worst, low)
                else:
                    t.best, t.worst = min(t.best, low), max(t.worst, high)

    def open_trades(self) -> list[dict]:
        return [
            {"trade_ref": t.ref, "instrument": t.instrument, "direction": t.direction, "size": t.size,
             "entry_ts": t.entry_ts, "entry_price": t.entry_price, "is_open": True}
            for t in self._open.values()
        ]

    def get_analysis(self) -> Recording:
        return self.rec
