"""A test strategy for the live runner: orders on a fixed bar schedule, whatever the position."""

import backtrader as bt


class LiveProbe(bt.Strategy):
    params = dict(
        every=3,         # order on every n-th bar (by bar count, so a restart re-decides the same bars)
        units=1000,
        side="buy",      # buy | sell | alternate
        bracket=False,   # buy_bracket with stop/target `pips` away
        pips=5.0,
    )

    def __init__(self):
        self.events = []

    def notify_order(self, order):
        self.events.append((order.ref, order.getstatusname()))

    def next(self):
        n = int(bt.num2date(self.data.datetime[0]).timestamp() // 60)  # minutes since epoch: stable across restarts
        step = self.p.every * int(self.data._compression)
        if n % step:
            return
        buy = self.p.side == "buy" or (self.p.side == "alternate" and (n // step) % 2 == 0)
        if self.p.bracket:
            price, pip = self.data.close[0], 0.0001 * self.p.pips
            if buy:
                self.buy_bracket(size=self.p.units, exectype=bt.Order.Market, stopprice=price - pip,
                                 limitprice=price + pip)
            else:
                self.sell_bracket(size=self.p.units, exectype=bt.Order.Market, stopprice=price + pip,
                                  limitprice=price - pip)
        elif buy:
            self.buy(size=self.p.units)
        else:
            self.sell(size=self.p.units)
