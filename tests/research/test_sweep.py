"""A small two-stage sweep lands in the risk DB ranked, with backtrader re-runs that agree."""

from __future__ import annotations

import pytest

from mbats.backtest.runner import BacktestSpec
from mbats.research import rank_sweep, run_sweep_config
from mbats.research.grid import GridError, expand_grid, parse_grid
from mbats.research.sweep import SweepRequest, run_sweep


def test_parse_grid_ranges_and_lists():
    grid = parse_grid(["fast=5:15:5", "slow=30,60", "allow_short=true,false"])
    assert grid == {"fast": [5, 10, 15], "slow": ["30", "60"], "allow_short": ["true", "false"]}
    assert len(expand_grid(grid)) == 12
    with pytest.raises(GridError):
        parse_grid(["fast=10:5"])


def test_two_stage_sweep_is_recorded_and_ranked(eurusd_h1, risk_conn):
    base = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", spread_pips=1.0, commission=0.00002)
    req = SweepRequest(base, {"fast": [5, 10, 20], "slow": [40, 80]}, top=2, rank_by="total_return_pct",
                       workers=2, track=True)
    result = run_sweep(req, bars={"EUR_USD": eurusd_h1})

    assert len(result.scores) == 6 and len(result.rerun) == 2
    returns = [s.metrics["total_return_pct"] for s in result.scores]
    assert returns == sorted(returns, reverse=True)
    assert all(s.agrees for s in result.rerun), [s.difference for s in result.rerun]
    assert all(s.trades_sha256 == s.bt_trades_sha256 for s in result.rerun)
    assert {s.config_id for s in result.rerun} == {s.config_id for s in result.scores[:2]}

    with risk_conn.cursor() as cur:
        cur.execute("SELECT status, configs, mlflow_run_id FROM sweeps WHERE sweep_id = %s", (result.sweep_id,))
        assert cur.fetchone()[:2] == ("finished", 6)
        cur.execute("SELECT rank, run_id, agrees FROM sweep_scores WHERE sweep_id = %s ORDER BY rank",
                    (result.sweep_id,))
        rows = cur.fetchall()
        assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert all(r[1] is not None and r[2] for r in rows[:2]) and all(r[1] is None for r in rows[2:])
        cur.execute("SELECT r.run_type, r.mlflow_run_id, m.value FROM runs r JOIN run_metrics m ON m.run_id = r.id "
                    "AND m.metric = 'sweep_rank' WHERE r.sweep_id = %s ORDER BY m.value", (result.sweep_id,))
        runs = cur.fetchall()
    assert [(r[0], r[2]) for r in runs] == [("sweep", 1.0), ("sweep", 2.0)]
    assert all(r[1] for r in runs)

    import mlflow

    child = mlflow.MlflowClient().get_run(runs[0][1])
    assert child.data.tags["mlflow.parentRunId"] == result.mlflow_run_id

    ranked = rank_sweep(result.sweep_id, metric="total_return_pct", top=3)
    assert [b["run_id"] for b in ranked["best"]] == [s.run_id for s in result.scores[:2]]
    assert [v["config_id"] for v in ranked["vectorised"]] == [s.config_id for s in result.scores[:3]]


def test_run_sweep_config_for_airflow(eurusd_h1, secmaster_conn):
    from mbats.secmaster.ingest import load_frames
    from mbats.secmaster.samples import eurusd_hourly

    instrument, frame = eurusd_hourly()
    load_frames(secmaster_conn, instrument, "H1", [("sample", frame)], assume_timezone="UTC")
    summary = run_sweep_config({"strategy": "sma_crossover", "instruments": "EUR_USD", "granularity": "H1",
                                "start": "2017-06-01", "end": "2017-09-01", "params": {"fast": 8, "slow": 24},
                                "sweep_id": "airflow-test"})
    assert summary["run_id"] and summary["metrics"]["trades"] > 0
    ranked = rank_sweep("airflow-test", metric="sharpe")
    assert ranked["finished"] == 1 and ranked["best"][0]["run_id"] == summary["run_id"]
