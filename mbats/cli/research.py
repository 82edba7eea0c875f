"""`mbats montecarlo` and `mbats walkforward`: how robust is a run, how does a strategy do out of sample."""

from __future__ import annotations

import typer

from mbats.cli.options import END, GRANULARITY, INSTRUMENTS, START


def montecarlo(
    run_id: int = typer.Argument(..., help="run id from `mbats runs`"),
    paths: int = typer.Option(1000, "--paths", help="simulated paths (1 to 1000000)"),
    seed: int = typer.Option(1, "--seed", help="random seed: the same seed gives the same paths"),
    method: str = typer.Option("shuffle", "--method",
                               help="shuffle (trade order), bootstrap (trades with replacement), "
                                    "blocks (block bootstrap of daily returns)"),
    block_days: int = typer.Option(5, "--block-days", help="block length in FX days (blocks method)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
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
