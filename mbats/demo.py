"""`make demo` / `mbats demo`: the main job on embedded defaults, from an empty machine to reports."""

from __future__ import annotations

from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mbats.backtest.runner import BacktestResult, BacktestSpec, run_backtest
from mbats.cli.output import console, table

M1_PAIRS = ["GBP_USD", "AUD_USD", "NZD_USD"]


@dataclass(frozen=True)
class DemoRun:
    strategy: str
    instruments: list[str]
    granularity: str
    params: dict


DEMO_RUNS = [
    DemoRun("sma_crossover", ["EUR_USD"], "H1", {"fast": 10, "slow": 30}),
    DemoRun("rsi_atr", ["EUR_USD"], "H1", {"stop_atr": 1.5, "target_atr": 3.0}),
    DemoRun("sma_crossover", M1_PAIRS, "M1", {"fast": 30, "slow": 120}),
    DemoRun("rsi_atr", M1_PAIRS, "M1", {"rsi_period": 30}),
]


def run_demo(track: bool = True) -> list[BacktestResult]:
    from mbats.config import get_settings
    from mbats.db import connect, server_url
    from mbats.db.migrate import upgrade_all
    from mbats.secmaster.samples import load_samples

    settings = get_settings()
    with console.status("starting PostgreSQL and migrating the secmaster and risk databases…"):
        where = server_url().split("@")[-1]
        upgrade_all()
    console.print(f"[green]✓[/] PostgreSQL at {where} ({'embedded, data in ' + str(settings.home / 'pgdata') if not settings.database_url else 'MBATS_DATABASE_URL'})")

    with console.status("loading sample bars (EUR/USD H1 from the backtesting package, synthetic M1 pairs)…"):
        conn = connect("secmaster")
        try:
            loads = load_samples(conn)
        finally:
            conn.close()
    for load in loads:
        console.print(f"[green]✓[/] {load.symbol} {load.granularity}: {load.rows:,} bars "
                      f"({load.written.inserted:,} new, {load.written.updated:,} updated, {load.written.unchanged:,} unchanged)")

    results: list[BacktestResult] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("backtests", total=len(DEMO_RUNS))
        for run in DEMO_RUNS:
            progress.update(task, description=f"{run.strategy} on {','.join(run.instruments)} {run.granularity}")
            spec = BacktestSpec(strategy=run.strategy, instruments=run.instruments, granularity=run.granularity,
                                params=dict(run.params), spread_pips=1.0)
            results.append(run_backtest(spec, track=track))
            progress.advance(task)

    table("demo runs (risk DB)", ["run", "strategy", "instruments", "gran", "trades", "return %", "sharpe",
                                  "max DD %", "win %", "seconds"],
          [(r.run_id, r.strategy, r.instruments, r.granularity, int(r.metrics.get("trades") or 0),
            r.metrics.get("total_return_pct"), r.metrics.get("sharpe"), r.metrics.get("max_drawdown_pct"),
            r.metrics.get("win_rate_pct"), r.seconds) for r in results],
          right=["trades", "return %", "sharpe", "max DD %", "win %", "seconds"])
    console.print(f"\nReports: {settings.reports_dir}/run-<id>/report.html  (e.g. {results[0].report_path})")
    console.print("More: `mbats runs`, `mbats report <run id>`, `mbats backtest --help`")
    if track:
        from mbats.tracking import tracking_uri

        uri = tracking_uri()
        if settings.mlflow_tracking_uri:
            console.print(f"MLflow UI: {uri}")
        else:
            console.print("MLflow UI: .cache/venv/bin/mlflow ui --port 5500 "
                          f"--backend-store-uri '{uri}'  → http://127.0.0.1:5500")
    return results
