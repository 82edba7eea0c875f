"""A test strategy for the live runner: orders on a fixed bar schedule, whatever the position."""

import datetime

import backtrader as bt


class LiveProbe(bt.Strategy):
    params = dict(
        every=3,         # order on every n-th bar (by bar count, so a restart re-decides the same bars)
        units=1000,
        side="buy",      # buy | sell | alternate
        bracket=False,   # buy_bracket with stop/target `pips` away
        pips=5.0,
        trail=0.0,       # bracket: a trailing stop this many pips away instead of a fixed stop
        limit_pips=0.0,  # > 0: a limit entry this many pips away from the close (rests at the broker)
        valid_minutes=0,  # > 0: the limit entry is good till this many minutes after the bar (GTD)
        oco=False,       # the second order of a bar is OCO with the first
    )

    def __init__(self):
        self.events = []

    def notify_order(self, order):
        self.events.append((order.ref, order.getstatusname(), order.info.get("reject_reason")))

    def next(self):
        n = int(bt.num2date(self.data.datetime[0]).timestamp() // 60)  # minutes since epoch: stable across restarts
        step = self.p.every * int(self.data._compression)
        if n % step:
            return
        buy = self.p.side == "buy" or (self.p.side == "alternate" and (n // step) % 2 == 0)
        price, pip = self.data.close[0], 0.0001 * self.p.pips
        if self.p.bracket:
            kw = {}
            if self.p.trail:
                kw = dict(stopexec=bt.Order.StopTrail, stopargs={"trailamount": 0.0001 * self.p.trail})
            if buy:
                self.buy_bracket(size=self.p.units, exectype=bt.Order.Market, stopprice=price - pip,
                                 limitprice=price + pip, **kw)
            else:
                self.sell_bracket(size=self.p.units, exectype=bt.Order.Market, stopprice=price + pip,
                                  limitprice=price - pip, **kw)
            return
        kw = {}
        if self.p.limit_pips:
            away = 0.0001 * self.p.limit_pips
            kw = dict(exectype=bt.Order.Limit, price=price - away if buy else price + away)
            if self.p.valid_minutes:
                kw["valid"] = bt.num2date(self.data.datetime[0]) + datetime.timedelta(minutes=self.p.valid_minutes)
        first = self.buy(size=self.p.units, **kw) if buy else self.sell(size=self.p.units, **kw)
        if self.p.oco:
            self.sell(size=self.p.units, oco=first, **kw)
