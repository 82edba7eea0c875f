"""Moving-average crossover: long when the fast average crosses above the slow one, short below."""

import backtrader as bt


class SmaCrossover(bt.Strategy):
    """Trend following on two simple moving averages of the close.

    The signal is computed on a bar's close and the order fills at the next bar's open.
    """

    params = dict(
        fast=10,            # bars in the fast average
        slow=30,            # bars in the slow average
        allow_short=True,   # reverse into a short on a downward cross (else just go flat)
    )

    def __init__(self):
        self.cross = {
            data: bt.ind.CrossOver(bt.ind.SMA(data.close, period=self.p.fast),
                                   bt.ind.SMA(data.close, period=self.p.slow))
            for data in self.datas
        }

    def next(self):
        for data, cross in self.cross.items():
            position = self.getposition(data).size
            if cross[0] > 0 and position <= 0:
                if position < 0:
                    self.close(data)
                self.buy(data)
            elif cross[0] < 0 and position >= 0:
                if position > 0:
                    self.close(data)
                if self.p.allow_short:
                    self.sell(data)
