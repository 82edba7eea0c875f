"""`mbats montecarlo` and `mbats walkforward`: how robust is a run, how does a strategy do out of sample."""

from __future__ import annotations

import typer

from mbats.cli.options import (COMMISSION, END, FIXED_PARAMS, FIXED_SIZER, GRANULARITY, GRID, INSTRUMENTS, JSON,
                               NO_MLFLOW, RANK_BY, SPREAD, START, WORKERS)


def montecarlo(
    run_id: int = typer.Argument(..., help="run id from `mbats runs`"),
    paths: int = typer.Option(1000, "--paths", help="simulated paths (1 to 1000000)"),
    seed: int = typer.Option(1, "--seed", help="random seed: the same seed gives the same paths"),
    method: str = typer.Option("shuffle", "--method",
                               help="shuffle (trade order), bootstrap (trades with replacement), "
                                    "blocks (block bootstrap of daily returns)"),
    block_days: int = typer.Option(5, "--block-days", help="block length in FX days (blocks method)"),
    as_json: bool = JSON,
) -> None:
    """Monte Carlo of a run: percentiles (5/50/95) of final equity and max drawdown over PATHS
    reshuffled or resampled histories; stored in the risk DB and shown by `mbats report`.

    \b
    Example:
    mbats montecarlo 12 --paths 1000 --seed 1
    mbats montecarlo 12 --method blocks --block-days 5
    """
    from mbats.cli.output import console, print_json, table
    from mbats.db import connect
    from mbats.errors import UsageError
    from mbats.research.montecarlo import METHODS, PERCENTILES, simulate_run
    from mbats.risk.research import read_run_for_montecarlo, save_montecarlo

    if not 1 <= run_id <= 2**63 - 1:
        raise UsageError(f"RUN_ID: must be a positive run id from `mbats runs` (got {run_id})")
    if method not in METHODS:
        raise UsageError(f"--method: use one of {', '.join(METHODS)} (got {method!r})")
    if not 0 <= seed < 2**63:
        raise UsageError(f"--seed: must be from 0 to 2^63-1 (got {seed})")
    conn = connect("risk")
    try:
        run, trades, equity = read_run_for_montecarlo(conn, run_id)
        if run["status"] != "finished":
            raise UsageError(f"run {run_id} is {run['status']}: Monte Carlo needs a finished run")
        result = simulate_run(trades, equity, run["cash"], paths, seed, method, block_days)
        mc_id = save_montecarlo(conn, run_id, result, run["metrics"])
    finally:
        conn.close()
    summary = result.summary()
    if as_json:
        print_json({"id": mc_id, "run_id": run_id, "method": method, "paths": paths, "seed": seed,
                    "block_days": result.block_days, "samples": result.samples, **summary,
                    "run_final_equity": run["metrics"].get("final_value"),
                    "run_max_drawdown_pct": run["metrics"].get("max_drawdown_pct")})
        return
    what = "trades" if method != "blocks" else f"daily returns in {result.block_days}-day blocks"
    table(f"run {run_id} · Monte Carlo ({method}, {paths:,} paths, seed {seed}, {result.samples:,} {what})",
          ["", *(f"p{q}" for q in PERCENTILES), "this run"],
          [("final equity", *(summary[f"final_equity_p{q}"] for q in PERCENTILES), run["metrics"].get("final_value")),
           ("max drawdown %", *(summary[f"max_drawdown_pct_p{q}"] for q in PERCENTILES),
            run["metrics"].get("max_drawdown_pct"))],
          right=[f"p{q}" for q in PERCENTILES] + ["this run"])
    console.print(f"{100 * summary['prob_loss']:.1f} % of paths end below the start cash; stored as Monte Carlo "
                  f"{mc_id} (see `mbats report {run_id}`)")


def print_montecarlo(run_id: int, rows: list[dict]) -> None:
    """The stored Monte Carlo results of a run (for `mbats report`)."""
    from mbats.cli.output import table

    if rows:
        table(f"Monte Carlo of run {run_id} (max drawdown %: p95 is the worst tail)",
              ["method", "paths", "seed", "equity p5", "equity p50", "equity p95", "DD% p5", "DD% p50", "DD% p95",
               "P(loss)"],
              [(r["method"] + (f" {r['block_days']}d" if r["method"] == "blocks" else ""), r["paths"], r["seed"],
                r["final_equity_p5"], r["final_equity_p50"], r["final_equity_p95"], r["max_drawdown_pct_p5"],
                r["max_drawdown_pct_p50"], r["max_drawdown_pct_p95"], r["prob_loss"]) for r in rows],
              right=["paths", "seed", "equity p5", "equity p50", "equity p95", "DD% p5", "DD% p50", "DD% p95",
                     "P(loss)"])


def walkforward(
    strategy: str = typer.Argument(..., help="strategy name (vectorised signals or brackets), e.g. sma_crossover, rsi_atr"),
    instruments: list[str] = INSTRUMENTS,
    grid: list[str] = GRID,
    train: str = typer.Option(..., "--train", help="in-sample window length, e.g. 90D or 12W"),
    test: str = typer.Option(..., "--test", help="out-of-sample window length (and step), e.g. 30D"),
    anchored: bool = typer.Option(False, "--anchored", help="every in-sample window starts at the first bar"),
    granularity: str = GRANULARITY,
    start: str = START,
    end: str = END,
    param: list[str] = FIXED_PARAMS,
    rank_by: str = RANK_BY,
    workers: int = WORKERS,
    cash: float = typer.Option(100_000.0, help="starting cash of each instrument's account"),
    commission: float = COMMISSION,
    spread: float = SPREAD,
    sizer: str = FIXED_SIZER,
    no_mlflow: bool = NO_MLFLOW,
    as_json: bool = JSON,
) -> None:
    """Walk-forward optimisation: in each in-sample window score the grid and pick the best, trade
    it on the next out-of-sample window, stitch the out-of-sample equity and report how much worse
    out-of-sample is than in-sample (degradation). Recorded in the risk DB (walk_forwards, …) and MLflow.

    \b
    Example:
    mbats walkforward sma_crossover -i EUR_USD -i GBP_USD -g H1 --grid fast=5,10,20 --grid slow=30:90:30 \\
        --train 90D --test 30D
    """
    import pandas as pd

    from mbats.backtest.runner import BacktestSpec
    from mbats.cli.backtest import backtest_values
    from mbats.cli.output import console, print_json, table
    from mbats.errors import UsageError
    from mbats.research.grid import parse_grid
    from mbats.research.walkforward import WalkForwardRequest, run_walk_forward
    from mbats.specs import check_grid

    values = backtest_values(strategy, instruments, granularity, start, end, param, cash, commission, spread, sizer)
    for name, text in (("--train", train), ("--test", test)):
        try:
            length = pd.Timedelta(text)
        except (ValueError, TypeError):
            raise UsageError(f"{name}: {text!r} is not a length such as 90D, 12W or 36h") from None
        if length <= pd.Timedelta(0):
            raise UsageError(f"{name}: must be positive (got {text})")
    if workers < 0:
        raise UsageError(f"--workers: must be 0 or more (got {workers})")
    parsed_grid = parse_grid(grid)
    check_grid(strategy, parsed_grid, values["params"])
    from mbats.errors import MbatsError
    from mbats.kernel.signals import has_brackets, has_signals
    from mbats.kernel.strategies import find_strategy
    from mbats.research.sweep import check_rank_by

    try:
        check_rank_by(rank_by)
    except MbatsError as exc:
        raise UsageError(f"--rank-by: {exc}") from None
    cls = find_strategy(strategy)
    if not (has_signals(cls) or has_brackets(cls)):
        raise UsageError(f"walk-forward needs a strategy the sweep core scores (vectorised signals or brackets); "
                         f"{strategy} has neither")
    request = WalkForwardRequest(BacktestSpec(**values), parsed_grid, train, test, anchored, rank_by,
                                 workers or None, track=not no_mlflow)
    run = run_walk_forward(request)
    if as_json:
        print_json(run.to_dict())
        return
    score = f"{rank_by}"
    table(f"walk-forward {run.wf_id} · {run.strategy} ({'anchored' if anchored else 'rolling'} {train} / {test})",
          ["instrument", "window", "test from", "test to", "params", f"in-sample {score}", f"out-of-sample {score}",
           "trades"],
          [(r["instrument"], r["window_no"], r["test_start"], r["test_end"], r["params"], r["is_score"],
            r["oos_score"], r["oos_trades"]) for r in run.window_rows()],
          right=["window", f"in-sample {score}", f"out-of-sample {score}", "trades"])
    table("stitched out-of-sample", ["instrument", "return %", "sharpe", "max DD %", "trades"],
          [(s, r.metrics.get("total_return_pct"), r.metrics.get("sharpe"), r.metrics.get("max_drawdown_pct"),
            r.metrics.get("trades")) for s, r in run.results.items()]
          + [("ALL", run.metrics.get("total_return_pct"), run.metrics.get("sharpe"),
              run.metrics.get("max_drawdown_pct"), run.metrics.get("trades"))],
          right=["return %", "sharpe", "max DD %", "trades"])
    s = run.summary
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    console.print(f"{rank_by}: in-sample mean {fmt(s['is_mean'])}, out-of-sample mean {fmt(s['oos_mean'])}, "
                  f"degradation {fmt(s['degradation'])}, efficiency {fmt(s['efficiency'])} over {s['windows']} windows "
                  f"({run.seconds:.1f} s on {run.workers} processes)", markup=False)
