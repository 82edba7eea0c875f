"""Mean reversion on RSI extremes, with ATR-sized stop-loss and take-profit brackets."""

import backtrader as bt

from mbats.kernel.indicators import RsiAtrBrackets


class RsiAtr(bt.Strategy):
    """Buy when RSI turns up out of oversold, sell when it turns down out of overbought.

    Every entry is a bracket: a market order, a stop-loss ``stop_atr`` ATRs away and a
    take-profit ``target_atr`` ATRs away, both from the signal bar's close. One position per
    instrument at a time.

    Backtest, paper and live run this class as it is. Sweeps score it in the compiled core, which
    reads ``compiled_signals`` to know which parameters feed the same rule (backtrader's RSI and ATR,
    its bracket fills: :mod:`mbats.research.brackets`); the sweep's backtrader re-runs of the best
    configurations check that both engines made the same trades.
    """

    params = dict(
        rsi_period=14,
        oversold=30.0,
        overbought=70.0,
        atr_period=14,
        stop_atr=1.5,       # stop-loss distance in ATRs
        target_atr=3.0,     # take-profit distance in ATRs
        allow_short=True,
    )
    compiled_signals = RsiAtrBrackets(rsi_period="rsi_period", oversold="oversold", overbought="overbought",
                                      atr_period="atr_period", stop_atr="stop_atr", target_atr="target_atr",
                                      allow_short="allow_short")
    param_bounds = {"rsi_period": (2, 10_000), "oversold": (0.0, 100.0), "overbought": (0.0, 100.0),
                    "atr_period": (1, 10_000), "stop_atr": (0.0, 100.0), "target_atr": (0.0, 100.0)}

    def __init__(self):
        self.rsi = {d: bt.ind.RSI(d.close, period=self.p.rsi_period) for d in self.datas}
        self.atr = {d: bt.ind.ATR(d, period=self.p.atr_period) for d in self.datas}
        self.pending = {d: [] for d in self.datas}

    def notify_order(self, order):
        if not order.alive() and order in self.pending[order.data]:
            self.pending[order.data].remove(order)

    def next(self):
        for data in self.datas:
            if self.getposition(data).size or self.pending[data]:
                continue
            rsi, atr, price = self.rsi[data], self.atr[data][0], data.close[0]
            if rsi[-1] < self.p.oversold <= rsi[0]:
                self.pending[data] = self.buy_bracket(
                    data=data, exectype=bt.Order.Market,
                    stopprice=price - self.p.stop_atr * atr, limitprice=price + self.p.target_atr * atr)
            elif self.p.allow_short and rsi[-1] > self.p.overbought >= rsi[0]:
                self.pending[data] = self.sell_bracket(
                    data=data, exectype=bt.Order.Market,
                    stopprice=price + self.p.stop_atr * atr, limitprice=price - self.p.target_atr * atr)
