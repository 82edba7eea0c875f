"""Option parsing shared by the CLI commands: one UTC date rule and one date vocabulary.

Every command names a data window ``--start`` / ``--end`` (end exclusive). ``backtest`` and
``sweep`` used ``--from`` / ``--to``; those still work as hidden aliases (:data:`OLD_START`,
:data:`OLD_END`) for one release. Only the standard library and typer are imported at module
level so that ``mbats --help`` stays fast.
"""

from __future__ import annotations

from datetime import datetime

import typer

from mbats.dates import parse_utc as parse_when  # the one UTC rule, shared with the DAGs
from mbats.errors import UsageError

# Hidden aliases of --start / --end, kept for scripts written against the old backtest/sweep flags.
OLD_START = typer.Option(None, "--from", hidden=True, help="old name of --start")
OLD_END = typer.Option(None, "--to", hidden=True, help="old name of --end")

# Options several commands share, declared once so their names and help stay the same.
INSTRUMENTS = typer.Option(..., "--instrument", "-i", help="instrument, repeat for several")
GRANULARITY = typer.Option("H1", "--granularity", "-g", help="bar granularity (M1, H1, D, …)")
START = typer.Option(None, "--start", help="first bar (UTC date/time), default: all data")
END = typer.Option(None, "--end", help="end of data, exclusive (UTC)")

# What a sweep and a walk-forward share: the grid, the fixed parameters, the ranking, the costs of the
# vectorised engine (a fixed sizer), the processes, and the output.
GRID = typer.Option(..., "--grid", help="parameter values: name=start:stop[:step] (inclusive) or name=v1,v2; "
                                        "repeatable")
FIXED_PARAMS = typer.Option([], "--param", "-p", help="fixed strategy parameter name=value, repeatable")
RANK_BY = typer.Option("sharpe", "--rank-by", help="metric to rank by (sharpe, total_return_pct, max_drawdown_pct, …)")
WORKERS = typer.Option(0, "--workers", "-w", help="processes; 0 = all local cores")
COMMISSION = typer.Option(0.0, "--commission", help="commission as a fraction of notional per fill")
SPREAD = typer.Option(0.0, "--spread", help="bid/ask spread in pips; half is paid on each fill")
FIXED_SIZER = typer.Option("fixed:units=10000", "--sizer",
                           help="fixed:units=N (the vectorised engine needs a fixed sizer)")
NO_MLFLOW = typer.Option(False, "--no-mlflow", help="do not log to MLflow")
JSON = typer.Option(False, "--json", help="print machine-readable results")

# Parameter search (sweep; walk-forward may share them): the exhaustive grid or Optuna's TPE over the same grid.
SEARCH = typer.Option("grid", "--search", help="grid (every configuration) or optuna (TPE over the grid's values)")
TRIALS = typer.Option(None, "--trials", help="optuna: completed trials in all (a resumed study's count too)")
TIMEOUT = typer.Option(None, "--timeout", help="optuna: seconds to search in this call")
SEED = typer.Option(None, "--seed", help="optuna: sampler seed (default 0); the same seed gives the same trials")
STUDY = typer.Option(None, "--study", help="optuna: study name (default: derived from the search)")
RESUME = typer.Option(False, "--resume", help="optuna: continue the study of that name (e.g. after Ctrl-C)")
PRUNE = typer.Option(False, "--prune", help="optuna: score each new trial on the first half of the bars first and "
                                            "stop it there when below the median (MedianPruner)")


def _one_of(value: str | None, alias: str | None, name: str, alias_name: str) -> tuple[str | None, str]:
    """The value given under an option or its old alias, and the name the user typed (for messages)."""
    if value is not None and alias is not None:
        raise UsageError(f"{alias_name} is the old name of {name}; give only one of them")
    return (alias, alias_name) if alias is not None else (value, name)


def parse_window(start: str | None, end: str | None, old_start: str | None = None,
                 old_end: str | None = None) -> tuple[datetime | None, datetime | None, dict[str, str]]:
    """``--start`` / ``--end`` (or their old ``--from`` / ``--to``) as UTC datetimes.

    Returns the two datetimes and the option names the user typed, ``{"start": …, "end": …}``, so
    that a later range check (end after start) names the options as they were given.
    """
    start_value, start_name = _one_of(start, old_start, "--start", "--from")
    end_value, end_name = _one_of(end, old_end, "--end", "--to")
    return (parse_when(start_value, start_name), parse_when(end_value, end_name),
            {"start": start_name, "end": end_name})


def check_window(start: datetime | None, end: datetime | None, names: dict[str, str] | None = None) -> None:
    """Usage error unless ``end`` is after ``start`` (either may be open)."""
    from mbats.specs import RangeSpec, check

    check(RangeSpec, {"start": start, "end": end}, names or {"start": "--start", "end": "--end"})
