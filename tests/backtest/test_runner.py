"""Backtests through the platform: fills, determinism, typed params, and what lands in the risk DB."""

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, load_bars, run_backtest, simulate
from mbats.kernel.strategies import coerce_params, find_strategy
from mbats.errors import MbatsError, NotFoundError
from mbats.risk.metrics import METRIC_DESCRIPTIONS


class BuyOnFifthSellOnTenth(bt.Strategy):
    def next(self):
        if len(self) == 5:
            self.buy(size=1000)
        elif len(self) == 10:
            self.close()


def ramp_bars(n: int = 30) -> pd.DataFrame:
    ts = pd.date_range("2024-01-02", periods=n, freq="1h", tz="UTC")
    o = 1.0 + np.arange(n) * 0.01
    return pd.DataFrame({"open": o, "high": o + 0.004, "low": o - 0.006, "close": o + 0.002, "volume": 1}, index=ts)


def test_signal_on_bar_t_fills_at_next_bar_open():
    bars = ramp_bars()
    spec = BacktestSpec(strategy="x", instruments=["EUR_USD"], granularity="H1")
    sim = simulate(spec, {"EUR_USD": bars}, BuyOnFifthSellOnTenth)
    buy, sell = sim.recording.fills
    assert buy["ts"] == bars.index[5] and buy["price"] == pytest.approx(bars["open"].iloc[5])
    assert sell["ts"] == bars.index[10] and sell["price"] == pytest.approx(bars["open"].iloc[10])
    [trade] = sim.trades.to_dict("records")
    assert trade["pnl"] == pytest.approx(1000 * (bars["open"].iloc[10] - bars["open"].iloc[5]))
    # MFE/MAE from the highs and lows seen while the trade was open
    assert trade["mfe_pct"] > 0 and trade["mae_pct"] <= 0


def test_spread_and_commission_are_charged_per_fill():
    bars = ramp_bars()
    spec = BacktestSpec(strategy="x", instruments=["EUR_USD"], granularity="H1", spread_pips=2.0, commission=0.0001)
    [trade] = simulate(spec, {"EUR_USD": bars}, BuyOnFifthSellOnTenth).trades.to_dict("records")
    entry, exit_ = bars["open"].iloc[5], bars["open"].iloc[10]
    expected_costs = 1000 * (2 * 0.0001) + 1000 * 0.0001 * (entry + exit_)
    assert trade["pnl"] - trade["pnl_net"] == pytest.approx(expected_costs)


def test_typed_params_false_string_is_false():
    cls = find_strategy("sma_crossover")
    assert coerce_params(cls, {"allow_short": "False", "fast": "5"}) == {"allow_short": False, "fast": 5}
    with pytest.raises(MbatsError, match="not an integer"):
        coerce_params(cls, {"fast": "1.5"})
    with pytest.raises(MbatsError, match="has no parameter"):
        coerce_params(cls, {"fsat": "3"})


def test_strategies_are_found_by_name():
    assert find_strategy("SmaCrossover") is find_strategy("sma_crossover")
    assert find_strategy("rsi_atr").__name__ == "RsiAtr"
    with pytest.raises(NotFoundError, match="available: .*sma_crossover"):
        find_strategy("nope")


def test_same_inputs_give_identical_trades(sample_data):
    spec = BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="H1",
                        params={"fast": 10, "slow": 30}, spread_pips=1.0)
    bars = load_bars(spec)
    first = simulate(spec, bars)
    second = simulate(spec, load_bars(spec))
    from mbats.kernel.trades import trades_fingerprint

    assert len(first.trades) > 50
    assert trades_fingerprint(first.trades) == trades_fingerprint(second.trades)
    no_short = simulate(BacktestSpec(**{**spec.__dict__, "params": {"allow_short": "false"}}), bars)
    assert set(no_short.trades["direction"]) == {"long"}


def test_rsi_atr_brackets_close_at_stop_or_target(sample_data):
    spec = BacktestSpec(strategy="rsi_atr", instruments=["EUR_USD"], granularity="H1")
    sim = simulate(spec, load_bars(spec))
    orders = pd.DataFrame(sim.recording.orders.values())
    assert {"stop", "limit"} <= set(orders["order_type"])
    children = orders[orders["parent_ref"].notna()]
    assert len(children) == 2 * (orders["parent_ref"].isna()).sum()
    closed = sim.trades[~sim.trades["is_open"]]
    assert len(closed) > 10


def test_run_is_recorded_in_the_risk_db(sample_data, risk_conn):
    spec = BacktestSpec(strategy="rsi_atr", instruments=["GBP_USD", "AUD_USD"], granularity="M1",
                        params={"rsi_period": "21"}, spread_pips=1.0)
    result = run_backtest(spec, track=False)
    with risk_conn.cursor() as cur:
        cur.execute("SELECT status, params, instruments, granularity, bars, data_from, data_to, code_version, "
                    "duration_s FROM runs WHERE id = %s", (result.run_id,))
        status, params, instruments, gran, bars, dfrom, dto, version, duration = cur.fetchone()
        assert status == "finished" and params == {"rsi_period": 21}
        assert instruments == ["GBP_USD", "AUD_USD"] and gran == "M1"
        assert bars == result.bars and dfrom < dto and version.startswith("mbats ") and duration > 0
        for table, expected in (("trades", len(result.trades)), ("equity", len(result.equity)),
                                ("run_metrics", len(METRIC_DESCRIPTIONS))):
            cur.execute(f"SELECT count(*) FROM {table} WHERE run_id = %s", (result.run_id,))
            assert cur.fetchone()[0] == expected, table
        cur.execute("SELECT count(*) FROM fills WHERE run_id = %s", (result.run_id,))
        fills = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM orders WHERE run_id = %s AND status = 'completed'", (result.run_id,))
        assert fills == cur.fetchone()[0] > 0
        cur.execute("SELECT min(mfe_pct), max(mae_pct), min(bars_held) FROM trades WHERE run_id = %s AND NOT is_open",
                    (result.run_id,))
        mfe, mae, held = cur.fetchone()
        assert mfe >= 0 and mae <= 0 and held >= 1


def test_a_failing_strategy_marks_the_run_failed_and_writes_no_rows(sample_data, risk_conn, tmp_path, monkeypatch):
    (tmp_path / "explodes.py").write_text(
        "import backtrader as bt\n\nclass Explodes(bt.Strategy):\n    def next(self):\n"
        "        if len(self) == 20:\n            raise ValueError('boom')\n")
    monkeypatch.setenv("MBATS_STRATEGIES_DIR", str(tmp_path))
    from mbats.config import reset_settings_cache

    reset_settings_cache()
    try:
        with pytest.raises(MbatsError, match="boom"):
            run_backtest(BacktestSpec(strategy="explodes", instruments=["EUR_USD"], granularity="H1"), track=False)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    with risk_conn.cursor() as cur:
        cur.execute("SELECT id, status, error FROM runs WHERE strategy = 'explodes'")
        run_id, status, error = cur.fetchone()
        assert status == "failed" and "boom" in error
        cur.execute("SELECT count(*) FROM trades WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] == 0


def test_missing_bars_are_a_clear_error(sample_data):
    spec = BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="M5")
    with pytest.raises(NotFoundError, match="no M5 bars for EUR_USD"):
        run_backtest(spec, track=False)


def test_a_failing_backtest_is_alerted_once_with_its_error(sample_data, risk_conn, tmp_path, monkeypatch, receiver):
    """A backtest that dies sends one run_failed alert (MBATS_ALERT_URLS) naming the run and the error."""
    url, received = receiver
    (tmp_path / "explodes_later.py").write_text(
        "import backtrader as bt\n\nclass ExplodesLater(bt.Strategy):\n    def next(self):\n"
        "        if len(self) == 30:\n            raise ValueError('feed went bad')\n")
    monkeypatch.setenv("MBATS_STRATEGIES_DIR", str(tmp_path))
    monkeypatch.setenv("MBATS_ALERT_URLS", url)
    from mbats.config import reset_settings_cache

    reset_settings_cache()
    try:
        with pytest.raises(MbatsError, match="feed went bad"):
            run_backtest(BacktestSpec(strategy="explodes_later", instruments=["EUR_USD"], granularity="H1"),
                         track=False)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    with risk_conn.cursor() as cur:
        cur.execute("SELECT id FROM runs WHERE strategy = 'explodes_later'")
        (run_id,) = cur.fetchone()
    [alert] = received
    assert alert["type"] == "failure" and f"run {run_id} failed (backtest explodes_later EUR_USD H1)" in alert["title"]
    assert "strategy explodes_later failed" in alert["message"] and "feed went bad" in alert["message"]
