"""Walk-forward optimisation as a user runs it: rolling and anchored windows, the sweep's scoring and
ranking in-sample, stitched out-of-sample equity, degradation, several instruments, risk DB, MLflow, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec
from mbats.research.sweep import sort_key
from mbats.research.vectorised import vector_simulate
from mbats.research.walkforward import (WalkForwardRequest, combined_equity, degradation, run_walk_forward,
                                        walk_forward_many, walk_forward_windows)

GRID = {"fast": [5, 10], "slow": [30, 60]}


@pytest.fixture(scope="module")
def two_instruments(eurusd_h1) -> dict[str, pd.DataFrame]:
    """EUR_USD as recorded and a second USD-quoted series: its log returns reversed in time."""
    frame = eurusd_h1.iloc[:4000]
    ret = np.log(frame["close"]).diff().fillna(0).to_numpy()[::-1]
    close = 1.30 * np.exp(np.cumsum(ret))
    other = pd.DataFrame({"open": np.r_[close[0], close[:-1]], "close": close}, index=frame.index)
    other["high"] = other[["open", "close"]].max(axis=1) + 2e-4
    other["low"] = other[["open", "close"]].min(axis=1) - 2e-4
    other["volume"] = 1.0
    return {"EUR_USD": frame, "GBP_USD": other[["open", "high", "low", "close", "volume"]]}


def test_rolling_and_anchored_windows(eurusd_h1):
    rolling = walk_forward_windows(eurusd_h1.index, "60D", "20D")
    anchored = walk_forward_windows(eurusd_h1.index, "60D", "20D", anchored=True)
    assert len(rolling) == len(anchored) > 5
    for r, a in zip(rolling, anchored):
        assert (r.test_start, r.test_end) == (a.test_start, a.test_end)   # same out-of-sample windows
        assert r.train_end - r.train_start == pd.Timedelta("60D")           # rolling keeps its length
        assert a.train_start == eurusd_h1.index[0] and a.train_end == a.test_start  # anchored grows
    for windows in (rolling, anchored):
        for a, b in zip(windows, windows[1:]):
            assert a.test_end <= b.test_start and a.test_start < b.test_start   # test windows never overlap
        for w in windows:
            assert w.train_end <= w.test_start                                  # no test bar is trained on


def test_in_sample_winner_is_the_sweeps_best_and_equity_is_stitched(two_instruments):
    base = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", spread_pips=1.0)
    result = walk_forward_many(base, two_instruments, GRID, "60D", "30D")["EUR_USD"]
    frame = two_instruments["EUR_USD"]
    # window 2 by hand: every configuration on the training bars, ranked by Sharpe as the sweep ranks
    w, chosen = result.windows[1], result.chosen[1]
    train = {"EUR_USD": frame[(frame.index >= w.train_start) & (frame.index < w.train_end)]}
    scored = [(vector_simulate(replace(base, params={"fast": f, "slow": s}), train).metrics, {"fast": f, "slow": s})
              for f in GRID["fast"] for s in GRID["slow"]]
    best_metrics, best = min(scored, key=lambda mp: sort_key(mp[0], "sharpe"))
    assert {k: chosen["params"][k] for k in ("fast", "slow")} == best
    assert chosen["is_score"] == pytest.approx(best_metrics["sharpe"], rel=1e-9)

    equity = result.equity
    assert equity.index.is_monotonic_increasing and not equity.index.duplicated().any()
    for a, b in zip(result.windows, result.windows[1:]):   # each window starts where the previous ended
        before, after = equity[equity.index < b.test_start], equity[equity.index >= b.test_start]
        assert after.iloc[0] == before.iloc[-1]
    closed = result.trades[~result.trades["is_open"].astype(bool)]
    assert equity.iloc[-1] - base.cash == pytest.approx(closed["pnl_net"].sum(), abs=1e-6)
    # each window's out-of-sample score is that window's own metric
    assert all(c["oos_metrics"]["trades"] == c["oos_trades"] for c in result.chosen)


def test_degradation_and_several_instruments_on_two_processes(two_instruments):
    base = BacktestSpec("sma_crossover", ["EUR_USD", "GBP_USD"], "H1", spread_pips=1.0)
    one = walk_forward_many(base, two_instruments, GRID, "60D", "30D", anchored=True, workers=1)
    two = walk_forward_many(base, two_instruments, GRID, "60D", "30D", anchored=True, workers=2)
    assert set(one) == {"EUR_USD", "GBP_USD"}
    for symbol in one:   # processes change nothing
        pd.testing.assert_series_equal(one[symbol].equity, two[symbol].equity)
        assert [c["params"] for c in one[symbol].chosen] == [c["params"] for c in two[symbol].chosen]
    assert one["EUR_USD"].trades["instrument"].eq("EUR_USD").all()
    assert one["GBP_USD"].trades["instrument"].eq("GBP_USD").all()

    summary = degradation(one, "sharpe")
    rows = [c for r in one.values() for c in r.chosen]
    is_mean = np.mean([c["is_score"] for c in rows if c["is_score"] is not None])
    oos_mean = np.mean([c["oos_score"] for c in rows if c["oos_score"] is not None])
    assert summary["windows"] == len(rows) == len(one["EUR_USD"].windows) + len(one["GBP_USD"].windows)
    assert summary["degradation"] == pytest.approx(is_mean - oos_mean)
    assert summary["efficiency"] == (pytest.approx(oos_mean / is_mean) if is_mean > 0 else None)
    dd = degradation(one, "max_drawdown_pct")   # lower is better: positive still means worse out of sample
    dd_rows = [(c["is_score"], c["oos_score"]) for c in rows]
    assert dd["degradation"] == pytest.approx(np.mean([o for _, o in dd_rows]) - np.mean([i for i, _ in dd_rows]))

    together = combined_equity(one, base.cash)
    pnl = sum(r.equity.iloc[-1] - base.cash for r in one.values())
    assert together.iloc[-1] == pytest.approx(base.cash + pnl)


def test_recorded_in_the_risk_db_and_mlflow(two_instruments, risk_conn):
    base = BacktestSpec("sma_crossover", ["EUR_USD", "GBP_USD"], "H1", spread_pips=1.0)
    run = run_walk_forward(WalkForwardRequest(base, GRID, "60D", "30D", workers=1, track=True), bars=two_instruments)
    with risk_conn.cursor() as cur:
        cur.execute("SELECT status, windows, degradation, mlflow_run_id, instruments FROM walk_forwards "
                    "WHERE wf_id = %s", (run.wf_id,))
        status, windows, worse, mlflow_run_id, instruments = cur.fetchone()
        cur.execute("SELECT instrument, count(*) FROM walk_forward_windows WHERE wf_id = %s GROUP BY 1", (run.wf_id,))
        per_instrument = dict(cur.fetchall())
        cur.execute("SELECT instrument, count(*), max(ts) FROM walk_forward_equity WHERE wf_id = %s GROUP BY 1",
                    (run.wf_id,))
        equity = {r[0]: r[1:] for r in cur.fetchall()}
    assert status == "finished" and instruments == ["EUR_USD", "GBP_USD"]
    assert windows == run.summary["windows"] == sum(per_instrument.values())
    assert per_instrument == {s: len(r.windows) for s, r in run.results.items()}
    assert worse == pytest.approx(run.summary["degradation"])
    assert set(equity) == {"EUR_USD", "GBP_USD", "ALL"} and equity["ALL"][0] == len(run.equity)

    from mlflow.tracking import MlflowClient

    from mbats.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    parent = client.get_run(mlflow_run_id)
    assert parent.data.tags["mbats.wf_id"] == run.wf_id and parent.data.params["train"] == "60D"
    assert parent.data.metrics["wf_windows"] == windows
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{mlflow_run_id}'")
    assert sorted(c.data.tags["mbats.instruments"] for c in children) == ["EUR_USD", "GBP_USD"]


def _mbats(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbats.cli.main", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=900)


def test_command(tmp_path):
    n = 3_000
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    for symbol, seed in (("NZD_USD", 11), ("AUD_USD", 12)):
        close = 0.62 + np.cumsum(np.random.default_rng(seed).normal(0, 6e-4, n))
        pd.DataFrame({"time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": close, "high": close + 3e-4,
                      "low": close - 3e-4, "close": close, "volume": 1}).to_csv(tmp_path / f"{symbol}.csv", index=False)
        assert _mbats("data", "import", str(tmp_path / f"{symbol}.csv"), "-i", symbol, "-g", "H1").returncode == 0
    proc = _mbats("walkforward", "sma_crossover", "-i", "NZD_USD", "-i", "AUD_USD", "-g", "H1", "--grid", "fast=5,10",
                  "--grid", "slow=30:60:30", "--train", "30D", "--test", "15D", "--anchored", "--workers", "2",
                  "--no-mlflow", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["instruments"]) == {"NZD_USD", "AUD_USD"}
    assert out["window_count"] == len(out["windows"]) > 4 and out["degradation"] is not None
    assert {w["instrument"] for w in out["windows"]} == {"NZD_USD", "AUD_USD"}
    assert all(w["train_start"] == out["windows"][0]["train_start"] for w in out["windows"])   # anchored
    text = _mbats("walkforward", "sma_crossover", "-i", "NZD_USD", "-g", "H1", "--grid", "fast=5,10",
                  "--train", "30D", "--test", "15D", "--no-mlflow")
    assert text.returncode == 0 and "degradation" in text.stdout and "stitched out-of-sample" in text.stdout
    brackets = _mbats("walkforward", "rsi_atr", "-i", "NZD_USD", "-g", "H1", "--grid", "stop_atr=1,2",
                      "--train", "30D", "--test", "15D", "--no-mlflow", "--json")  # a bracket strategy runs too
    assert brackets.returncode == 0, brackets.stderr
    bracket_windows = json.loads(brackets.stdout)["windows"]
    assert bracket_windows and {w["params"]["stop_atr"] for w in bracket_windows} <= {1, 2}
    bad = _mbats("walkforward", "sma_crossover", "-i", "NZD_USD", "--grid", "fast=5", "--train", "soon",
                 "--test", "15D", "--no-mlflow")
    assert bad.returncode == 2 and "--train" in bad.stderr and "Traceback" not in bad.stderr
    for args, message in ((["sma_crossover", "--rank-by", "luck"], "--rank-by"),
                          (["ml_signal", "--grid", "threshold=0.5,0.6"], "vectorised signals or brackets")):
        wrong = _mbats("walkforward", args[0], "-i", "NZD_USD", "--grid", "fast=5", "--train", "30D", "--test", "15D",
                       "--no-mlflow", *args[1:]) if args[0] == "sma_crossover" else \
            _mbats("walkforward", *args, "-i", "NZD_USD", "--train", "30D", "--test", "15D", "--no-mlflow")
        assert wrong.returncode == 2 and message in wrong.stderr and "Traceback" not in wrong.stderr


def test_walk_forward_refuses_pairs_quoted_outside_the_account_currency(eurusd_h1):
    """Its out-of-sample P&L stays in the quote currency, so a USD_JPY walk-forward in a USD account is refused."""
    from mbats.backtest.runner import BacktestSpec
    from mbats.errors import MbatsError

    base = BacktestSpec("sma_crossover", ["USD_JPY"], "H1", account_currency="USD")
    with pytest.raises(MbatsError, match="quoted in JPY, the account is USD; set MBATS_ACCOUNT_CURRENCY=JPY"):
        walk_forward_many(base, {"USD_JPY": eurusd_h1}, {"fast": [5], "slow": [30]}, "60D", "30D")
    # in a JPY account it runs (nothing to convert)
    jpy = replace(base, account_currency="JPY")
    assert walk_forward_many(jpy, {"USD_JPY": eurusd_h1}, {"fast": [5], "slow": [30]}, "60D", "30D")["USD_JPY"]
