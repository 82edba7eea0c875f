"""The analyzer that writes a live run to the risk database bar by bar (account snapshot, trades)."""

from __future__ import annotations

import logging

import backtrader as bt
import pandas as pd

log = logging.getLogger(__name__)


def _utc(num: float) -> pd.Timestamp:
    return pd.Timestamp(bt.num2date(num), tz="UTC")


class LiveRecorder(bt.Analyzer):
    params = (("store", None), ("risk", None), ("on_kill", None))

    def start(self) -> None:
        self.open_rows: dict[str, dict] = {}
        self.live_bars = 0
        self.first_ts: pd.Timestamp | None = None
        self.last_ts: pd.Timestamp | None = None
        self.killed = False

    def notify_trade(self, trade: bt.Trade) -> None:
        store = self.p.store
        name = trade.data._name
        if trade.justopened:
            ref = self.strategy.broker.trade_ids.get(name) or f"bt{trade.ref}"
            self.open_rows[name] = row = {
                "trade_ref": ref, "instrument": name, "direction": "long" if trade.size > 0 else "short",
                "size": abs(trade.size),
                # an inherited position (restart) opens by a simulated order, which backtrader stamps 0
                "entry_ts": _utc(trade.dtopen or self.data.datetime[0]), "entry_price": trade.price, "is_open": True}
        elif trade.isclosed and name in self.open_rows:
            row = self.open_rows.pop(name)
            sign = 1.0 if row["direction"] == "long" else -1.0
            exit_price = row["entry_price"] + sign * trade.pnl / row["size"] if row["size"] else None
            row.update(exit_ts=_utc(trade.dtclose), exit_price=exit_price, pnl=trade.pnl, pnl_net=trade.pnlcomm,
                       commission=trade.commission, bars_held=trade.barlen, is_open=False,
                       return_pct=100.0 * sign * (exit_price / row["entry_price"] - 1.0) if exit_price else None)
        else:
            return
        if store is not None:
            store.upsert_trade(row)

    def prenext(self) -> None:
        self._bar()

    def next(self) -> None:
        self._bar()

    def _bar(self) -> None:
        if self.killed or not getattr(self.data, "bar_is_live", False):
            return
        broker = self.strategy.broker
        ts = _utc(self.data.datetime[0])
        self.first_ts = self.first_ts or ts
        self.last_ts = ts
        self.live_bars += 1
        positions = []
        for data in self.strategy.datas:
            pos = broker.getposition(data)
            price = data.close[0]
            positions.append({"instrument": data._name, "size": pos.size, "avg_price": pos.price or None,
                              "market_price": price, "unrealized_pnl": pos.size * (price - pos.price)})
        if self.p.store is not None:
            self.p.store.snapshot(ts.to_pydatetime(), broker.getcash(), broker.getvalue(), positions)
        # the daily-loss check is not here: it runs in the broker when the bar arrives, before the strategy
