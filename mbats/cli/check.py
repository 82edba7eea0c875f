"""`mbats check`: checks of a user's strategy before its results are trusted."""

from __future__ import annotations

import typer

from mbats.cli.app import group
from mbats.cli.options import END, GRANULARITY, INSTRUMENTS, START

check_app = group(help="Check a strategy for mistakes that make backtests look better than trading would be.")


@check_app.command("lookahead")
def lookahead(
    strategy: str = typer.Argument(..., help="strategy name, e.g. sma_crossover or rsi_atr"),
    instruments: list[str] = INSTRUMENTS,
    granularity: str = GRANULARITY,
    start: str = START,
    end: str = END,
    param: list[str] = typer.Option([], "--param", "-p", help="strategy parameter name=value, repeatable"),
    cuts: int = typer.Option(5, "--cuts", help="truncated histories to compare with the full one (1 to 100)"),
    sizer: str = typer.Option("fixed:units=10000", help="fixed:units=N or percent:percent=P"),
    spread: float = typer.Option(0.0, "--spread", help="bid/ask spread in pips (order sizes may depend on it)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """Run STRATEGY on the full history and on histories cut at several bars, and report any
    signal (signal strategies) or order (other strategies) that changes when future bars are removed.

    Exits 1 when a decision changed: the strategy read bars it could not have seen yet.

    \b
    Example:
    mbats check lookahead sma_crossover -i EUR_USD -g H1 --start 2024-01-01 --end 2024-07-01
    """
    from mbats.backtest.runner import BacktestSpec, load_bars
    from mbats.cli.backtest import backtest_values
    from mbats.cli.output import console, fmt, print_json, table
    from mbats.errors import MbatsError, UsageError
    from mbats.research.lookahead import check_lookahead

    if not 1 <= cuts <= 100:
        raise UsageError(f"--cuts: must be from 1 to 100 (got {cuts})")
    spec = BacktestSpec(**backtest_values(strategy, instruments, granularity, start, end, param, 100_000.0, 0.0,
                                          spread, sizer))
    report = check_lookahead(spec, load_bars(spec), cuts)
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(f"{report.strategy} {report.params}: compared {report.method} of the full history "
                      f"({report.bars:,} bars) with {len(report.cuts)} truncated histories "
                      f"(cut after {', '.join(fmt(c) for c in report.cuts)})", markup=False)
        if report.differences:
            table("decisions that changed when future bars were removed",
                  ["instrument", "cut after", "first differing bar", "full history", "truncated"],
                  [(d.instrument or "all", d.cut, d.first_ts, str(d.full), str(d.truncated))
                   for d in report.differences])
        else:
            console.print("no look-ahead: every decision up to each cut is the same as on the full history")
    if report.differences:
        first = report.first
        raise MbatsError(f"look-ahead in {report.strategy}: its {report.method} at {first.first_ts.isoformat()} "
                         f"change when bars after {first.cut.isoformat()} are removed")
