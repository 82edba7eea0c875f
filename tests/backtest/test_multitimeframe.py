"""Higher timeframes: a bar is seen only once it has closed, in backtrader and in signals().

The rule (mbats.kernel.timeframes): an H4 bar 08:00-12:00 is first visible at the first base bar
starting at or after 12:00, and carried forward until the next one is visible.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.errors import MbatsError
from mbats.kernel.signals import SignalStrategy, higher_data
from mbats.kernel.strategies import find_strategy
from mbats.kernel.timeframes import higher_timeframe, resample
from mbats.kernel.trades import trades_fingerprint
from mbats.research.lookahead import check_lookahead
from mbats.research.vectorised import vector_simulate
from mbats.secmaster.samples import eurusd_hourly, synthetic_minutes

FINGERPRINT_NOTE = "trade by trade: instrument, side, size, entry/exit time and price, net P&L"


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    _, frame = eurusd_hourly()
    frame = frame.rename(columns={c: c.lower() for c in frame.columns})
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop(frame.columns[0])), name="ts").tz_localize("UTC")
    return frame.set_index(index)[["open", "high", "low", "close", "volume"]]


def _hours(*stamps: str) -> pd.DataFrame:
    """H1 bars whose close is the hour they start at (07:00 -> 7.0), so a close names its bar."""
    index = pd.DatetimeIndex([pd.Timestamp(f"2024-01-02 {s}", tz="UTC") for s in stamps], name="ts")
    close = index.hour.to_numpy(np.float64)
    return pd.DataFrame({"open": close - 0.5, "high": close + 0.25, "low": close - 0.75, "close": close,
                         "volume": 1.0}, index=index)


# 06:00..15:00 with 11:00 missing: bucket 04-08 is partial at the start, bucket 08-12 loses its last bar
STAMPS = ("06:00", "07:00", "08:00", "09:00", "10:00", "12:00", "13:00", "14:00", "15:00", "16:00", "17:00")
# H4 close seen at each base bar's decision, built by hand from the rule
EXPECTED = [np.nan, np.nan,  # 06:00, 07:00: bucket 04-08 not over before they start
            7.0,     # 08:00: bucket 04-08 is over; its last bar is 07:00
            7.0, 7.0,  # 09:00, 10:00: bucket 08-12 still open
            10.0,    # 12:00 (11:00 missing): bucket 08-12 is over; its last bar is 10:00
            10.0, 10.0, 10.0,  # 13:00-15:00: bucket 12-16 still open
            15.0,    # 16:00: bucket 12-16 is over
            15.0]    # 17:00: bucket 16-20 still open at the end of the history: never shown


def _recording_strategy(granularity: str = "H4"):
    seen: list[tuple[pd.Timestamp, float, float]] = []

    class RecordHigher(bt.Strategy):
        """Writes down what its higher-timeframe feed shows at each base bar; never trades."""

        timeframes = (granularity,)

        def prenext(self):
            self.next()

        def next(self):
            higher = higher_data(self, self.datas[0], granularity)
            ts = pd.Timestamp(bt.num2date(self.datas[0].datetime[0]), tz="UTC").round("s")
            seen.append((ts, higher.close[0] if len(higher) else np.nan, higher.high[0] if len(higher) else np.nan))

    return RecordHigher, seen


def test_the_vectorised_helper_shows_each_h4_bar_only_from_its_close():
    bars = _hours(*STAMPS)
    higher = higher_timeframe(bars, "H4")
    np.testing.assert_array_equal(higher["close"].to_numpy(), EXPECTED)
    # the H4 bar 08-12 as a whole: open of 08:00, high over 08:00-10:00, close of 10:00
    row = resample(bars, "H4").loc["2024-01-02 08:00"]
    assert (row["open"], row["high"], row["close"], row["visible_ts"]) == (
        7.5, 10.25, 10.0, pd.Timestamp("2024-01-02 12:00", tz="UTC"))


def test_backtrader_feed_shows_each_h4_bar_only_from_its_close():
    bars = _hours(*STAMPS)
    cls, seen = _recording_strategy()
    simulate(BacktestSpec("record", ["EUR_USD"], "H1", financing=False), {"EUR_USD": bars}, cls)
    assert [s[0] for s in seen] == list(bars.index)  # one decision per base bar, none skipped
    np.testing.assert_array_equal([s[1] for s in seen], EXPECTED)


def _independent_h4_close(bars: pd.DataFrame) -> list[float]:
    """A plain loop over the base bars: the close of the latest 4-hour bucket over before each bar starts."""
    out, last_close_of = [], {}
    for ts, close in zip(bars.index, bars["close"]):
        bucket = ts.floor("4h")
        last_close_of[bucket] = close
        ended = [b for b in last_close_of if b + pd.Timedelta(hours=4) <= ts]
        out.append(last_close_of[max(ended)] if ended else np.nan)
    return out


def test_both_engines_match_a_plain_loop_on_the_sample_and_never_show_an_open_h4_bar(eurusd):
    bars = eurusd.iloc[:600]
    expected = _independent_h4_close(bars)
    np.testing.assert_array_equal(higher_timeframe(bars, "H4")["close"].to_numpy(), expected)
    cls, seen = _recording_strategy()
    simulate(BacktestSpec("record", ["EUR_USD"], "H1", financing=False), {"EUR_USD": bars}, cls)
    np.testing.assert_array_equal([s[1] for s in seen], expected)


def test_changing_future_bars_leaves_earlier_views_unchanged(eurusd):
    bars = eurusd.iloc[:400]
    cut = 250
    changed = bars.copy()
    changed.iloc[cut + 1:, :4] *= 1.05  # every later price moves
    views = []
    for frame in (bars, changed):
        cls, seen = _recording_strategy()
        simulate(BacktestSpec("record", ["EUR_USD"], "H1", financing=False), {"EUR_USD": frame}, cls)
        views.append(seen)
        helper = higher_timeframe(frame, "H4")
        views.append(list(zip(frame.index, helper["close"], helper["high"])))
    bt_before, vec_before, bt_after, vec_after = views
    for before, after in ((bt_before, bt_after), (vec_before, vec_after)):
        np.testing.assert_array_equal(np.array(before[:cut + 1])[:, 1:].astype(float),
                                      np.array(after[:cut + 1])[:, 1:].astype(float))
        assert not np.array_equal(np.array(before)[:, 1:].astype(float), np.array(after)[:, 1:].astype(float))


def test_bundled_multitimeframe_strategy_passes_the_lookahead_check(eurusd):
    spec = BacktestSpec("sma_trend_filter", ["EUR_USD"], "H1")
    report = check_lookahead(spec, {"EUR_USD": eurusd}, cuts=8)
    assert report.ok, report.to_dict()


class NaiveH4Filter(SignalStrategy):
    """The usual mistake: pandas resample labels the H4 bar 08:00 and ffill shows its close from 08:00."""

    params = dict(trend=5)

    @classmethod
    def signals(cls, bars, trend=5):
        h4 = bars["close"].resample("4h").last()
        seen = h4.reindex(bars.index, method="ffill")
        return (seen > seen.rolling(trend).mean()).astype("int8")


def test_the_lookahead_check_catches_a_naively_resampled_h4(eurusd):
    spec = BacktestSpec("naive", ["EUR_USD"], "H1")
    report = check_lookahead(spec, {"EUR_USD": eurusd}, cuts=8, strategy_cls=NaiveH4Filter)
    assert not report.ok


@pytest.mark.parametrize("symbol,granularity,params", [
    ("EUR_USD", "H1", {}),
    ("EUR_USD", "H1", dict(fast=5, slow=20, trend=10, allow_short=False)),
    ("GBP_USD", "M1", dict(fast=15, slow=60, trend=6)),
])
def test_backtrader_and_vectorised_agree_trade_by_trade(eurusd, symbol, granularity, params):
    if symbol == "EUR_USD":
        bars = {symbol: eurusd}
    else:
        _, frame = synthetic_minutes("GBP_USD", 1.27, "2024-01-01", "2024-01-06")
        bars = {symbol: frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))}
    spec = BacktestSpec("sma_trend_filter", [symbol], granularity, params=params, spread_pips=1.0,
                        commission=0.00002, financing=False)
    slow, fast = simulate(spec, bars), vector_simulate(spec, bars)
    assert len(slow.trades) > 5
    assert trades_fingerprint(slow.trades) == trades_fingerprint(fast.trades), FINGERPRINT_NOTE


def test_the_filter_changes_the_trades_of_the_plain_crossover(eurusd):
    """The H4 filter is not decoration: it removes trades against the 4-hour trend."""
    plain = simulate(BacktestSpec("sma_crossover", ["EUR_USD"], "H1", financing=False), {"EUR_USD": eurusd})
    filtered = simulate(BacktestSpec("sma_trend_filter", ["EUR_USD"], "H1", financing=False), {"EUR_USD": eurusd})
    assert len(filtered.trades) != len(plain.trades)
    assert set(filtered.trades["entry_ts"]) - set(plain.trades["entry_ts"])  # flat->in when the trend turns


def test_a_timeframe_that_is_not_a_multiple_of_the_base_bars_is_refused():
    bars = _hours(*STAMPS)
    with pytest.raises(MbatsError, match="whole multiple"):
        simulate(BacktestSpec("record", ["EUR_USD"], "H8", financing=False), {"EUR_USD": bars},
                 _recording_strategy("H4")[0])
    with pytest.raises(MbatsError, match="whole multiple"):
        simulate(BacktestSpec("record", ["EUR_USD"], "H3", financing=False), {"EUR_USD": bars},
                 _recording_strategy("H4")[0])
    with pytest.raises(MbatsError, match="calendar"):
        simulate(BacktestSpec("record", ["EUR_USD"], "H1", financing=False), {"EUR_USD": bars},
                 _recording_strategy("W")[0])
    assert find_strategy("sma_trend_filter").timeframes == ("H4",)


class H4Momentum(bt.Strategy):
    """A plain backtrader strategy trading on its @H4 feed: long above the previous H4 close, else flat."""

    timeframes = ("H4",)

    def next(self):
        data = self.datas[0]
        h4 = higher_data(self, data, "H4")
        if len(h4) < 2:
            return
        up = h4.close[0] > h4.close[-1]
        if up and not self.getposition(data).size:
            self.buy(data)
        elif not up and self.getposition(data).size:
            self.close(data)


def test_a_backtrader_strategy_reading_its_h4_feed_passes_the_orders_lookahead_check(eurusd):
    spec = BacktestSpec("h4_momentum", ["EUR_USD"], "H1", financing=False)
    bars = {"EUR_USD": eurusd.iloc[:1500]}
    report = check_lookahead(spec, bars, cuts=6, strategy_cls=H4Momentum)
    assert report.method == "orders" and report.ok, report.to_dict()
    assert len(simulate(spec, bars, H4Momentum).trades) > 10
