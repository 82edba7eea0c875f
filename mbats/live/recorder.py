"""The analyzer that writes a live run to the risk database bar by bar (account snapshot, trades).

Money is in the account currency, as in backtests: a trade's P&L and commission are OANDA's own
figures for its fills (the broker books them into backtrader's trade), and an open position's
unrealised P&L is marked at the bar's close and converted at that moment's rate
(:func:`quote_rate`). A trade's exit price is its closing fills' price, never recovered from P&L,
its entry and exit times are its fills' times, and its financing is what OANDA charged the position
over its life (rollovers and the closing fill's own), as backtests book it per trade.
"""

from __future__ import annotations

import logging

import backtrader as bt
import pandas as pd

from mbats.kernel.fx import conversion_legs, quote_currency

log = logging.getLogger(__name__)


def _utc(num: float) -> pd.Timestamp:
    return pd.Timestamp(bt.num2date(num), tz="UTC")


def quote_rate(instrument: str, account: str, closes: dict[str, float],
               home_factors: dict[str, tuple[float, float]], gain: bool = True) -> float | None:
    """Account-currency units per unit of ``instrument``'s quote currency now, or None if unknown.

    From the bars of the session itself when they hold a converting pair (USD_JPY converts its own
    yen for a USD account: 1 / close), by the rule backtests use (:func:`mbats.kernel.fx.conversion_legs`);
    otherwise OANDA's conversion factor for the instrument from its latest price
    (``quoteHomeConversionFactors``: ``gain`` picks the factor for a positive amount).
    """
    for legs in conversion_legs(quote_currency(instrument), account):
        if all(closes.get(pair) for pair, _ in legs):
            rate = 1.0
            for pair, invert in legs:
                rate *= 1.0 / closes[pair] if invert else closes[pair]
            return rate
    factors = home_factors.get(instrument)
    if factors is None:
        return None
    return factors[0] if gain else factors[1]


class LiveRecorder(bt.Analyzer):
    params = (("store", None), ("risk", None), ("on_kill", None), ("currency", "USD"), ("hub", None))

    def start(self) -> None:
        self.open_rows: dict[str, dict] = {}
        self.closing: dict[str, list[float]] = {}  # instrument -> [units closed, units x price] of the open trade
        self.financing: dict[str, float] = {}  # instrument -> financing booked by the fills closing it
        self.fill_times: dict[tuple[str, str], pd.Timestamp] = {}  # (instrument, opened|closed) -> last such fill
        self.live_bars = 0
        self.first_ts: pd.Timestamp | None = None
        self.last_ts: pd.Timestamp | None = None
        self.killed = False
        self._unconverted: set[str] = set()

    def notify_order(self, order: bt.Order) -> None:
        """Collect the prices the open trade is closed at (notified before the trade itself)."""
        name = order.data._name
        when = pd.Timestamp(order.info.fill_time) if "fill_time" in order.info else None
        # the broker's per-fill commission info carries OANDA's financing of the trade the fill closed
        charged = getattr(order.comminfo, "financing", 0.0) if order.executed.size else 0.0
        if charged:
            self.financing[name] = self.financing.get(name, 0.0) + charged
        for bit in order.executed.iterpending():  # this notification's fill(s) only
            if bit.closed:
                units_value = self.closing.setdefault(name, [0.0, 0.0])
                units_value[0] += abs(bit.closed)
                units_value[1] += abs(bit.closed) * bit.price
            for side, units in (("closed", bit.closed), ("opened", bit.opened)):
                if units and when is not None:
                    self.fill_times[(name, side)] = when

    def notify_trade(self, trade: bt.Trade) -> None:
        store = self.p.store
        name = trade.data._name
        if trade.justopened:
            ref = self.strategy.broker.trade_ids.get(name) or f"bt{trade.ref}"
            self.closing.pop(name, None)
            self.financing.pop(name, None)
            self.open_rows[name] = row = {
                "trade_ref": ref, "instrument": name, "direction": "long" if trade.size > 0 else "short",
                "size": abs(trade.size),
                # an inherited position (restart) opens by a simulated order, which backtrader stamps 0
                "entry_ts": self.fill_times.pop((name, "opened"), None) or _utc(trade.dtopen or self.data.datetime[0]),
                "entry_price": trade.price, "is_open": True}
        elif trade.isclosed and name in self.open_rows:
            row = self.open_rows.pop(name)
            sign = 1.0 if row["direction"] == "long" else -1.0
            units, value = self.closing.pop(name, (0.0, 0.0))
            exit_price = value / units if units else None
            # the fill's time: an order of the run's last bar fills after that bar, which trade.dtclose would say
            exit_ts = self.fill_times.pop((name, "closed"), None) or _utc(trade.dtclose)
            # pnl and commission: OANDA's, in the account currency (see OandaBroker._on_fill)
            row.update(exit_ts=exit_ts, exit_price=exit_price, financing=self.financing.pop(name, 0.0),
                       pnl=trade.pnl, pnl_net=trade.pnlcomm,
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

    def _unrealised(self, name: str, size: float, avg: float, price: float, closes: dict[str, float]) -> float | None:
        """An open position's P&L at ``price`` in the account currency (0 when flat, None if no rate)."""
        if not size:
            return 0.0
        in_quote = size * (price - avg)
        hub = self.p.hub
        rate = quote_rate(name, self.p.currency, closes, getattr(hub, "home_factors", {}), gain=in_quote >= 0)
        if rate is None:
            if name not in self._unconverted:
                self._unconverted.add(name)
                log.warning("no %s rate to convert %s's unrealised P&L into %s: recorded as unknown",
                            quote_currency(name), name, self.p.currency)
            return None
        return in_quote * rate

    def _bar(self) -> None:
        if self.killed or not getattr(self.data, "bar_is_live", False):
            return
        broker = self.strategy.broker
        ts = _utc(self.data.datetime[0])
        self.first_ts = self.first_ts or ts
        self.last_ts = ts
        self.live_bars += 1
        closes = {data._name: data.close[0] for data in self.strategy.datas if len(data)}
        positions = []
        for data in self.strategy.datas:
            pos = broker.getposition(data)
            price = data.close[0]
            positions.append({"instrument": data._name, "size": pos.size, "avg_price": pos.price or None,
                              "market_price": price,
                              "unrealized_pnl": self._unrealised(data._name, pos.size, pos.price, price, closes)})
        if self.p.store is not None:
            self.p.store.snapshot(ts.to_pydatetime(), broker.getcash(), broker.getvalue(), positions)
        # the daily-loss check is not here: it runs in the broker when the bar arrives, before the strategy
