"""BarsFeed's own per-bar methods must hand backtrader exactly what its generic ones would.

The broker fills market orders at ``tick_open`` and strategies read the bar through the lines, so
a wrong tick or a bar off by one would move fills silently: both are compared bar by bar.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest

from mbats.backtest.feed import BarsFeed


class GenericBarsFeed(BarsFeed):
    """BarsFeed with backtrader's own per-bar feed methods, the reference."""

    advance = bt.feed.DataBase.advance
    advance_peek = bt.feed.DataBase.advance_peek
    _tick_nullify = bt.feed.DataBase._tick_nullify
    _tick_fill = bt.feed.DataBase._tick_fill


class Watcher(bt.Strategy):
    """Flips the position every 7 bars and notes what it and the broker see on each bar."""

    def start(self) -> None:
        self.seen: list[tuple] = []
        self.fills: list[tuple] = []

    def next(self) -> None:
        data = self.data
        self.seen.append((len(data), data.datetime[0], data.open[0], data.close[0],
                          *(getattr(data, "tick_" + name) for name in
                            ("open", "high", "low", "close", "volume", "openinterest", "last"))))
        if len(data) % 7 == 0:
            self.sell(size=2_000) if self.position.size > 0 else self.buy(size=2_000)

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            self.fills.append((bt.num2date(order.executed.dt), order.executed.size, order.executed.price))


def _bars(count: int) -> pd.DataFrame:
    index = pd.date_range("2026-03-02", periods=count, freq="1min", tz="UTC", name="ts")
    steps = pd.Series(range(count), index=index, dtype="float64")
    opens = 1.25 + ((steps * 37) % 23 - 11) * 1e-4
    return pd.DataFrame({"open": opens, "high": opens + 3e-4, "low": opens - 2e-4,
                         "close": opens + ((steps * 13) % 5 - 2) * 1e-4, "volume": steps % 9 + 1}, index=index)


def _run(feed_cls: type[BarsFeed], runonce: bool, bars: pd.DataFrame) -> Watcher:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    cerebro.adddata(feed_cls(bars=bars, name="EUR_USD", timeframe=bt.TimeFrame.Minutes))
    cerebro.addstrategy(Watcher)
    return cerebro.run()[0]


@pytest.mark.parametrize("runonce", [True, False])
def test_bars_feed_per_bar_methods_match_backtrader(runonce: bool) -> None:
    bars = _bars(300)
    ours, reference = _run(BarsFeed, runonce, bars), _run(GenericBarsFeed, runonce, bars)
    assert len(ours.seen) == len(bars) and ours.seen == reference.seen
    # ticks are the bar itself (tick_last is the close) and fills come at the next bar's open
    assert ours.seen[5][4:] == (bars["open"].iloc[5], bars["high"].iloc[5], bars["low"].iloc[5],
                                bars["close"].iloc[5], bars["volume"].iloc[5], 0.0, bars["close"].iloc[5])
    assert len(ours.fills) == 42 and ours.fills == reference.fills
    assert ours.fills[0][2] == bars["open"].iloc[7]
