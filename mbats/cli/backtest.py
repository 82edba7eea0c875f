"""`mbats backtest`: run one strategy over security-master bars and record it."""

from __future__ import annotations

import typer

from mbats.cli.options import END, GRANULARITY, INSTRUMENTS, OLD_END, OLD_START, START, parse_window


def backtest_values(strategy: str, instruments: list[str], granularity: str, start: str | None, end: str | None,
                    param: list[str], cash: float, commission: float, spread: float, sizer: str,
                    account_currency: str | None = None, slippage: float = 0.0,
                    max_units: float | None = None, max_gross_exposure: float | None = None,
                    old_start: str | None = None, old_end: str | None = None) -> dict:
    """The options of a backtest (or a sweep's base) checked against their ranges, named as options."""
    from mbats.kernel.strategies import parse_param_options
    from mbats.specs import BACKTEST_OPTIONS, BacktestRequest, check, check_strategy_params

    start_at, end_at, names = parse_window(start, end, old_start, old_end)
    values = dict(strategy=strategy, instruments=list(instruments), granularity=granularity,
                  start=start_at, end=end_at, params=parse_param_options(param),
                  cash=cash, commission=commission, spread_pips=spread, sizer=sizer)
    if account_currency is not None:  # unset: MBATS_ACCOUNT_CURRENCY (the spec's default)
        values["account_currency"] = account_currency.strip().upper()
    if slippage:
        values["slippage_pips"] = slippage
    for name, value in (("max_units", max_units), ("max_gross_exposure", max_gross_exposure)):
        if value is not None:
            values[name] = value
    check(BacktestRequest, values, {**BACKTEST_OPTIONS, **names})
    check_strategy_params(strategy, values["params"])
    return values


def backtest(
    strategy: str = typer.Argument(..., help="strategy name, e.g. sma_crossover or rsi_atr"),
    instruments: list[str] = INSTRUMENTS,
    granularity: str = GRANULARITY,
    start: str = START,
    end: str = END,
    old_start: str = OLD_START,
    old_end: str = OLD_END,
    param: list[str] = typer.Option([], "--param", "-p", help="strategy parameter name=value, repeatable; typed by the strategy's defaults"),
    cash: float = typer.Option(100_000.0, help="starting cash in account currency"),
    commission: float = typer.Option(0.0, help="commission as a fraction of notional per fill (0.00002 = 0.2 bp)"),
    spread: float = typer.Option(0.0, "--spread", help="bid/ask spread in pips; half is paid on each fill"),
    sizer: str = typer.Option("fixed:units=10000", help="fixed:units=N or percent:percent=P"),
    account_currency: str = typer.Option(None, "--account-currency",
                                         help="currency the run is booked in (default MBATS_ACCOUNT_CURRENCY, USD)"),
    slippage: float = typer.Option(0.0, "--slippage",
                                   help="pips every fill is slipped against you (fixed; default 0: off)"),
    max_units: float = typer.Option(None, "--max-units",
                                    help="pre-trade limit as in live: most units held per instrument, pending orders included"),
    max_gross_exposure: float = typer.Option(None, "--max-gross-exposure",
                                             help="pre-trade limit as in live: most gross notional (account currency)"),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log the run to MLflow"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """Backtest a strategy; the run, its orders, fills, trades, equity and metrics go to the risk DB.

    \b
    Example:
    mbats backtest sma_crossover -i EUR_USD -g H1 -p fast=10 -p slow=40 --spread 1.2
    """
    from mbats.backtest.runner import BacktestSpec, run_backtest
    from mbats.cli.output import console, print_json, table

    spec = BacktestSpec(**backtest_values(strategy, instruments, granularity, start, end, param, cash, commission,
                                          spread, sizer, account_currency, slippage, max_units,
                                          max_gross_exposure, old_start, old_end))
    result = run_backtest(spec, track=not no_mlflow)
    summary = {"run_id": result.run_id, "strategy": result.strategy, "params": result.params,
               "instruments": result.instruments, "granularity": result.granularity, "bars": result.bars,
               "seconds": round(result.seconds, 3), "trades_sha256": result.trades_hash(),
               "metrics": result.metrics, "report": result.report_path, "risk_events": result.risk_events, "mlflow_run_id": result.mlflow_run_id}
    if as_json:
        print_json(summary)
        return
    table(f"run {result.run_id} · {result.strategy} {result.params}", ["metric", "value"],
          [(k, v) for k, v in result.metrics.items()], right=["value"])
    console.print(f"{result.bars:,} bars in {result.seconds:.1f} s · report: {result.report_path}")
