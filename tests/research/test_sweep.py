"""A small two-stage sweep lands in the risk DB ranked, with backtrader re-runs that agree."""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec
from mbats.research.grid import MAX_BACKTRADER_CONFIGS, GridError, expand_grid, parse_grid
from mbats.research.sweep import (SweepRequest, configurations, confirm_sweep, open_sweep, plan_chunks, run_sweep,
                                  score_chunk, store_ranks)


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

    ranked = [r for r in store_ranks(result.sweep_id, "total_return_pct") if "rank" in r]
    assert [r["id"] for r in sorted(ranked, key=lambda r: r["rank"])] == [s.run_id for s in result.scores[:2]]


def test_grids_beyond_a_thousand_configurations_go_to_the_compiled_core_only():
    from mbats.kernel.strategies import find_strategy

    big = {"fast": list(range(2, 52)), "slow": list(range(60, 100))}          # 2,000 configurations
    base = BacktestSpec("sma_crossover", ["EUR_USD"], "H1")
    assert len(configurations(find_strategy("sma_crossover"), base, big)) == 2_000
    # several instruments: the core cannot model it, so every configuration would be a separate run
    multi = BacktestSpec("sma_crossover", ["EUR_USD", "GBP_USD"], "H1")
    with pytest.raises(GridError, match=f"limit is {MAX_BACKTRADER_CONFIGS:,} .*cannot model"):
        configurations(find_strategy("sma_crossover"), multi, big)
    # rsi_atr's brackets are scored by the core too, on one instrument
    rsi_grid = {"rsi_period": list(range(2, 1004))}
    assert len(configurations(find_strategy("rsi_atr"), BacktestSpec("rsi_atr", ["EUR_USD"], "H1"), rsi_grid)) == 1002
    with pytest.raises(GridError, match="cannot model"):
        configurations(find_strategy("rsi_atr"), BacktestSpec("rsi_atr", ["EUR_USD", "GBP_USD"], "H1"), rsi_grid)

    class Undeclared(find_strategy("rsi_atr")):
        compiled_signals = None

    with pytest.raises(GridError, match="no vectorised signals"):
        configurations(Undeclared, BacktestSpec("rsi_atr", ["EUR_USD"], "H1"), rsi_grid)


def test_the_dag_stages_give_the_cli_sweep_in_chunks(eurusd_h1, secmaster_conn, risk_conn):
    """open_sweep, score_chunk per chunk and confirm_sweep (what backtest_sweep runs) rank as run_sweep does."""
    from mbats.secmaster.ingest import load_frames
    from mbats.secmaster.samples import eurusd_hourly

    instrument, frame = eurusd_hourly()
    load_frames(secmaster_conn, instrument, "H1", [("sample", frame)], assume_timezone="UTC")
    grid = {"fast": [5, 8, 13], "slow": [24, 40]}
    base = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", start=pd.Timestamp("2017-03-01", tz="UTC"),
                        end=pd.Timestamp("2017-12-01", tz="UTC"), spread_pips=1.0, run_type="sweep",
                        sweep_id="dag-stages")
    chunks = plan_chunks(base, grid, tasks=2)
    assert [(c["first"], c["count"]) for c in chunks] == [(0, 3), (3, 3)]
    parent = open_sweep(base, grid, "sharpe", top=2, track=True)
    for chunk in reversed(chunks):             # any order; a retried chunk rewrites its rows
        score_chunk(base, grid, chunk["first"], chunk["count"], parent)
    score_chunk(base, grid, chunks[0]["first"], chunks[0]["count"], parent)
    summary = confirm_sweep(base, grid, "sharpe", top=2, parent_run_id=parent)
    again = confirm_sweep(base, grid, "sharpe", top=2, parent_run_id=parent)   # a retried confirm: no new runs

    cli = run_sweep(SweepRequest(base, grid, top=2, rank_by="sharpe", workers=1, track=False, record=False),
                    bars={"EUR_USD": read_window(secmaster_conn, base)})
    assert [b["params"] for b in summary["best"]] == [s.params for s in cli.scores[:2]]
    assert summary["configs"] == 6 and summary["disagreements"] == [] and all(b["agrees"] for b in summary["best"])
    assert [b["run_id"] for b in again["best"]] == [b["run_id"] for b in summary["best"]]
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(run_id), min(rank), max(rank) FROM sweep_scores WHERE sweep_id = %s",
                    ("dag-stages",))
        assert cur.fetchone() == (6, 2, 1, 6)
        cur.execute("SELECT r.status, m.value FROM runs r JOIN run_metrics m ON m.run_id = r.id "
                    "AND m.metric = 'sweep_rank' WHERE r.sweep_id = %s ORDER BY m.value", ("dag-stages",))
        assert cur.fetchall() == [("finished", 1.0), ("finished", 2.0)]
        cur.execute("SELECT status, mlflow_run_id FROM sweeps WHERE sweep_id = %s", ("dag-stages",))
        assert cur.fetchone() == ("finished", parent)
    # MLflow (issue 18.3): each child names its data and code and carries a light summary; the parent the grid
    from mlflow import MlflowClient

    client = MlflowClient()
    for best in summary["best"]:
        tags = client.get_run(best["mlflow_run_id"]).data.tags
        assert "EUR_USD: " in tags["mbats.data_sources"] and tags["mbats.code_version"].startswith("mbats ")
        assert tags["mbats.data_from"] >= "2017-03-01" and tags["mbats.data_to"] < "2017-12-01"
        assert {a.path for a in client.list_artifacts(best["mlflow_run_id"], "summary")} == {
            "summary/metrics.json", "summary/equity.csv"}
    assert {"sweep_scores.csv", "heatmap_sharpe.svg"} <= {a.path for a in client.list_artifacts(parent)}


def read_window(conn, base: BacktestSpec) -> pd.DataFrame:
    from mbats.secmaster import read_bars

    return read_bars(conn, "EUR_USD", "H1", base.start, base.end)
