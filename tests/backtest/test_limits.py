"""Pre-trade limits in backtests: the live rules, pending orders counted, blocked orders recorded."""

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.backtest.runner import BacktestSpec, simulate

TS = pd.date_range("2024-01-02", periods=30, freq="1h", tz="UTC")


class FiveRestingLimits(bt.Strategy):
    """On bar 3, five buy limits of 10,000 a little below the market; the market then falls through them."""

    def __init__(self):
        self.statuses: list[str] = []

    def next(self):
        if len(self) == 3:
            for _ in range(5):
                self.buy(size=10_000, exectype=bt.Order.Limit, price=1.0950)

    def notify_order(self, order):
        if order.status in (order.Completed, order.Rejected):
            self.statuses.append(order.getstatusname())


def _bars() -> pd.DataFrame:
    opens = np.r_[np.full(5, 1.1000), np.full(25, 1.0900)]  # every limit fills from bar 6 on
    return pd.DataFrame({"open": opens, "high": opens + 0.0005, "low": opens - 0.0005, "close": opens,
                         "volume": 1}, index=TS)


def _run(**limits):
    spec = BacktestSpec("five_resting_limits", ["EUR_USD"], "H1", **limits)
    return simulate(spec, {"EUR_USD": _bars()}, FiveRestingLimits)


def test_without_limits_all_five_resting_orders_fill():
    sim = _run()
    assert sim.positions[-1]["size"] == 50_000 and sim.risk_events == []


def test_max_units_counts_pending_orders_so_the_position_never_exceeds_it():
    sim = _run(max_units=30_000)
    sizes = [p["size"] for p in sim.positions]
    assert max(sizes) == 30_000                    # three filled; without the pending count all five would
    blocked = [e for e in sim.risk_events if e["rule"] == "max_units"]
    assert len(blocked) == 2 and all(e["action"] == "blocked" for e in blocked)
    assert "pending orders" in blocked[0]["detail"]
    assert blocked[0]["ts"].replace(tzinfo=None) == TS[2].to_pydatetime().replace(tzinfo=None)  # the bar, not now


def test_gross_exposure_limit_blocks_in_account_currency():
    sim = _run(max_gross_exposure=25_000)          # 10,000 EUR at ~1.10 USD = 11,000 USD each
    assert max(p["size"] for p in sim.positions) == 20_000
    assert [e["rule"] for e in sim.risk_events] == ["max_gross_exposure"] * 3


def test_a_recorded_backtest_keeps_what_the_limits_blocked(sample_data, risk_conn):
    from mbats.backtest.runner import run_backtest

    spec = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", params={"fast": 10, "slow": 30}, max_units=5_000)
    result = run_backtest(spec, track=False, write_report=False)
    assert result.metrics["trades"] == 0 and result.risk_events > 0   # every 10,000-unit entry is over the limit
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*), min(rule), max(action) FROM risk_events WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone() == (result.risk_events, "max_units", "blocked")
        cur.execute("SELECT broker -> 'risk_limits' ->> 'max_units' FROM runs WHERE id = %s", (result.run_id,))
        assert float(cur.fetchone()[0]) == 5_000
