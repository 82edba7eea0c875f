"""`mbats sweep`: a two-stage parameter sweep (vectorised pre-screen, backtrader re-runs of the best).
"""

from __future__ import annotations

import typer

from mbats.cli.options import (COMMISSION, END, FIXED_PARAMS, FIXED_SIZER, GRANULARITY, GRID, INSTRUMENTS, JSON,
                               NO_MLFLOW, OLD_END, OLD_START, PRUNE, RANK_BY, RESUME, SEARCH, SEED, SPREAD, START,
                               STUDY, TIMEOUT, TRIALS, WORKERS)


def sweep_command(
    strategy: str = typer.Argument(..., help="strategy name, e.g. sma_crossover"),
    instruments: list[str] = INSTRUMENTS,
    grid: list[str] = GRID,
    granularity: str = GRANULARITY,
    start: str = START,
    end: str = END,
    old_start: str = OLD_START,
    old_end: str = OLD_END,
    param: list[str] = FIXED_PARAMS,
    top: int = typer.Option(5, "--top", help="configurations re-run in backtrader (recorded as runs)"),
    rank_by: str = RANK_BY,
    tolerance: float = typer.Option(0.01, "--tolerance", help="max total-return gap (percentage points) for vectorised and backtrader to agree"),
    workers: int = WORKERS,
    cash: float = typer.Option(100_000.0, help="starting cash in account currency"),
    commission: float = COMMISSION,
    spread: float = SPREAD,
    sizer: str = FIXED_SIZER,
    no_mlflow: bool = NO_MLFLOW,
    as_json: bool = JSON,
    search: str = SEARCH,
    trials: int = TRIALS,
    timeout: float = TIMEOUT,
    seed: int = SEED,
    study: str = STUDY,
    resume: bool = RESUME,
    prune: bool = PRUNE,
) -> None:
    """Sweep a parameter grid: score every configuration vectorised, re-run the top N in backtrader.

    The table shows both stages side by side; a configuration whose backtrader trades differ from
    the vectorised ones, or whose total return differs by more than --tolerance, is flagged.
    Everything is recorded in the risk DB (sweeps, sweep_scores, runs with run_type=sweep) and in
    MLflow (a parent run; the backtrader re-runs are its children).

    --search optuna samples the same grid with Optuna's TPE instead of scoring all of it, within
    --trials and/or --timeout; the study is kept under MBATS_HOME, so --resume continues it;
    --prune stops trials whose score on the first half of the bars is below the median.

    \b
    Example:
    mbats sweep sma_crossover -i GBP_USD -g M1 --grid fast=5:50:5 --grid slow=60:240:20 --top 5
    mbats sweep sma_crossover -i GBP_USD -g M1 --grid fast=2:101 --grid slow=110:308:2 --search optuna --trials 200
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mbats.backtest.runner import BacktestSpec
    from mbats.cli.backtest import backtest_values
    from mbats.cli.output import console, err_console, fmt, print_json, table
    from mbats.research.grid import parse_grid
    from mbats.research.sweep import SweepRequest, run_sweep
    from mbats.specs import SWEEP_OPTIONS, SweepOptions, check, check_grid

    # Everything is checked before the first configuration runs: ranges, strategy params, every grid value.
    values = backtest_values(strategy, instruments, granularity, start, end, param, cash, commission, spread, sizer,
                             old_start=old_start, old_end=old_end)
    check(SweepOptions, dict(top=top, rank_by=rank_by, tolerance=tolerance, workers=workers), SWEEP_OPTIONS)
    _check_search(search, trials, timeout, seed, study, resume, prune)
    parsed_grid = parse_grid(grid)
    check_grid(strategy, parsed_grid, values["params"])
    base = BacktestSpec(**values)
    request = SweepRequest(base, parsed_grid, top=top, rank_by=rank_by, tolerance_pct=tolerance,
                           workers=workers or None, track=not no_mlflow)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=as_json,
                  disable=not err_console.is_terminal) as progress:  # scripts get the results, not bars
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        if search == "optuna":
            from mbats.research.search import SearchRequest, run_search

            result = run_search(SearchRequest(request, trials=trials, timeout=timeout, seed=seed or 0, study=study,
                                              resume=resume, prune=prune), progress=update)
        else:
            result = run_sweep(request, progress=update)
    if as_json:
        print_json(result.to_dict())
        return
    frame = result.table()
    columns = list(frame.columns)
    table(f"sweep {result.sweep_id} · {result.strategy} ranked by {rank_by}", columns,
          frame.astype(object).where(frame.notna(), None).itertuples(index=False),
          right=[c for c in columns if c not in ("agrees",)])
    console.print(f"{len(result.scores)} configurations scored vectorised ({result.engine}) in "
                  f"{result.vector_seconds:.2f} s; top {len(result.rerun)} re-run in backtrader in "
                  f"{result.backtrader_seconds:.1f} s on {result.workers} processes")
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    if result.disagreements:
        for s in result.disagreements:
            console.print(f"[red]disagree[/red] config {s.config_id} {s.params}: {s.difference}")
    elif result.rerun:
        console.print(f"vectorised and backtrader agree on all re-runs (identical trades, return gap ≤ {fmt(tolerance, 4)} pp)")


def _check_search(search: str, trials: int | None, timeout: float | None, seed: int | None, study: str | None,
                  resume: bool, prune: bool = False) -> None:
    """--search and its budget, refused before any bar is read."""
    from mbats.errors import UsageError

    if search not in ("grid", "optuna"):
        raise UsageError(f"--search: '{search}' is not grid or optuna")
    if search == "grid":
        given = [name for name, value in (("--trials", trials), ("--timeout", timeout), ("--seed", seed),
                                          ("--study", study), ("--resume", resume or None),
                                          ("--prune", prune or None)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} apply to --search optuna only")
        return
    from mbats.research.search import check_budget

    check_budget(trials, timeout)
