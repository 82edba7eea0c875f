"""Monte Carlo of trades and returns: hand-checkable paths, seeded, stored and shown by `mbats report`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mbats.errors import MbatsError, UsageError
from mbats.research.montecarlo import simulate_returns, simulate_trades


def test_winning_trades_in_any_order_end_at_the_same_equity_without_drawdown():
    result = simulate_trades([100.0, 250.0, 50.0, 600.0], 10_000.0, paths=500, seed=1, method="shuffle")
    assert result.final_equity.shape == (500,) and (result.final_equity == 11_000.0).all()
    assert (result.max_drawdown_pct == 0.0).all()
    s = result.summary()
    assert s["final_equity_p5"] == s["final_equity_p50"] == s["final_equity_p95"] == 11_000.0
    assert s["max_drawdown_pct_p95"] == 0.0 and s["prob_loss"] == 0.0


def test_a_win_and_a_loss_give_the_two_drawdowns_their_orders_give():
    # +100 then -50: 1000 -> 1100 -> 1050, 50/1100 below the peak; -50 first: 1000 -> 950, 5 % below
    result = simulate_trades([100.0, -50.0], 1_000.0, paths=2_000, seed=7, method="shuffle")
    assert (result.final_equity == 1_050.0).all()
    assert set(np.round(result.max_drawdown_pct, 9)) == {round(100 * 50 / 1100, 9), 5.0}
    share_first_win = np.mean(np.isclose(result.max_drawdown_pct, 100 * 50 / 1100))
    assert 0.45 < share_first_win < 0.55
    assert result.percentile("max_drawdown_pct", 5) == pytest.approx(100 * 50 / 1100)
    assert result.percentile("max_drawdown_pct", 95) == pytest.approx(5.0)


def test_bootstrap_draws_trades_with_replacement():
    result = simulate_trades([100.0, -50.0], 1_000.0, paths=4_000, seed=3, method="bootstrap")
    assert set(result.final_equity) == {1_200.0, 1_050.0, 900.0}        # ++, +- or -+, --
    assert result.prob_loss == pytest.approx(0.25, abs=0.03)             # only -- ends below 1000
    assert np.mean(result.final_equity == 1_050.0) == pytest.approx(0.5, abs=0.03)


def test_the_same_seed_gives_the_same_paths_another_seed_others():
    pnl = np.random.default_rng(0).normal(10, 100, 300)
    for method in ("shuffle", "bootstrap"):
        a = simulate_trades(pnl, 50_000.0, paths=300, seed=42, method=method)
        b = simulate_trades(pnl, 50_000.0, paths=300, seed=42, method=method)
        c = simulate_trades(pnl, 50_000.0, paths=300, seed=43, method=method)
        np.testing.assert_array_equal(a.max_drawdown_pct, b.max_drawdown_pct)
        np.testing.assert_array_equal(a.final_equity, b.final_equity)
        assert not np.array_equal(a.max_drawdown_pct, c.max_drawdown_pct)
    r1 = simulate_returns(pnl / 1e4, 1.0, paths=100, seed=5, block_days=7)
    r2 = simulate_returns(pnl / 1e4, 1.0, paths=100, seed=5, block_days=7)
    np.testing.assert_array_equal(r1.final_equity, r2.final_equity)


def test_paths_are_chunked_without_changing_the_answer(monkeypatch):
    from mbats.research import montecarlo

    pnl = np.random.default_rng(1).normal(0, 50, 200)
    whole = simulate_trades(pnl, 10_000.0, paths=64, seed=9, method="bootstrap")
    monkeypatch.setattr(montecarlo, "CHUNK_CELLS", 200 * 64)  # one chunk: same as above
    assert np.array_equal(simulate_trades(pnl, 10_000.0, paths=64, seed=9, method="bootstrap").final_equity,
                          whole.final_equity)
    monkeypatch.setattr(montecarlo, "CHUNK_CELLS", 200 * 5)   # 13 chunks: every path still simulated once
    chunked = simulate_trades(pnl, 10_000.0, paths=64, seed=9, method="bootstrap")
    assert chunked.final_equity.shape == (64,) and np.isfinite(chunked.max_drawdown_pct).all()


def test_block_bootstrap_of_daily_returns():
    steady = simulate_returns([0.01] * 10, 1_000.0, paths=50, seed=1, block_days=3)
    np.testing.assert_allclose(steady.final_equity, 1_000.0 * 1.01 ** 10)
    assert (steady.max_drawdown_pct == 0.0).all()
    # one block as long as the history: every path is the history itself
    returns = [0.02, -0.05, 0.01, 0.03]
    whole = simulate_returns(returns, 100.0, paths=20, seed=2, block_days=4)
    values = 100.0 * np.cumprod([1.0, *(1 + np.array(returns))])
    np.testing.assert_allclose(whole.final_equity, values[-1])
    np.testing.assert_allclose(whole.max_drawdown_pct, 100 * (1 - values[2] / values[1]))
    with pytest.raises(UsageError, match="--block-days"):
        simulate_returns(returns, 100.0, block_days=5)


def test_bad_requests_are_clear():
    with pytest.raises(MbatsError, match="no closed trades"):
        simulate_trades([], 1_000.0)
    with pytest.raises(UsageError, match="--paths"):
        simulate_trades([1.0], 1_000.0, paths=0)
    with pytest.raises(UsageError, match="method"):
        simulate_trades([1.0], 1_000.0, method="jackknife")


def _mbats(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbats.cli.main", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=900)


def test_command_stores_the_simulation_and_report_shows_it(eurusd_h1):
    from mbats.backtest.runner import BacktestSpec, run_backtest

    run = run_backtest(BacktestSpec("sma_crossover", ["EUR_USD"], "H1", params={"fast": 5, "slow": 20},
                                    spread_pips=0.5), track=False, bars={"EUR_USD": eurusd_h1.iloc[:2000]},
                       write_report=False)
    closed = run.trades[~run.trades["is_open"].astype(bool)]
    assert len(closed) > 20

    first = _mbats("montecarlo", str(run.run_id), "--paths", "300", "--seed", "3", "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    expected_final = 100_000.0 + closed["pnl_net"].sum()
    assert result["final_equity_p5"] == pytest.approx(expected_final) == result["final_equity_p95"]
    assert 0 < result["max_drawdown_pct_p5"] <= result["max_drawdown_pct_p50"] <= result["max_drawdown_pct_p95"]
    again = json.loads(_mbats("montecarlo", str(run.run_id), "--paths", "300", "--seed", "3", "--json").stdout)
    assert again == result                                    # same seed: same numbers, the same stored row
    blocks = _mbats("montecarlo", str(run.run_id), "--paths", "200", "--method", "blocks", "--block-days", "3")
    assert blocks.returncode == 0, blocks.stderr

    report = json.loads(_mbats("report", str(run.run_id), "--json").stdout)
    assert sorted(r["method"] for r in report["montecarlo"]) == ["blocks", "shuffle"]
    shown = _mbats("report", str(run.run_id))
    assert "Monte Carlo of run" in shown.stdout and "shuffle" in shown.stdout and "blocks 3d" in shown.stdout

    missing = _mbats("montecarlo", "999999", "--paths", "10")
    assert missing.returncode == 1 and "no run 999999" in missing.stderr and "Traceback" not in missing.stderr
    bad = _mbats("montecarlo", str(run.run_id), "--method", "jackknife")
    assert bad.returncode == 2 and "--method" in bad.stderr
