"""`mbats runs`, `mbats report`, `mbats demo`."""

from __future__ import annotations

import typer


def runs(
    strategy: str = typer.Option(None, help="only runs of this strategy"),
    sweep: str = typer.Option(None, help="only runs of this sweep id"),
    limit: int = typer.Option(20, help="how many (newest first)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """List runs in the risk database with their key metrics."""
    from mbats.cli.output import console, print_json, table
    from mbats.db import connect
    from mbats.errors import UsageError
    from mbats.risk.store import list_runs

    if not 1 <= limit <= 100_000:
        raise UsageError(f"--limit: must be from 1 to 100000 (got {limit})")
    conn = connect("risk")
    try:
        rows = list_runs(conn, limit=limit, strategy=strategy, sweep_id=sweep)
    finally:
        conn.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no runs yet: try `mbats demo` or `mbats backtest --help`")
        return
    table("runs", ["id", "type", "strategy", "instruments", "gran", "status", "started", "trades", "return %",
                   "sharpe", "max DD %"],
          [(r["id"], r["run_type"], r["strategy"], r["instruments"], r["granularity"], r["status"], r["started_at"],
            r["metrics"].get("trades"), r["metrics"].get("total_return_pct"), r["metrics"].get("sharpe"),
            r["metrics"].get("max_drawdown_pct")) for r in rows],
          right=["id", "trades", "return %", "sharpe", "max DD %"])


def report(
    run_id: int = typer.Argument(..., help="run id from `mbats runs`"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
    html: str = typer.Option(None, "--html", metavar="PATH",
                             help="(re)write the run's HTML tear sheet to PATH from the risk DB and the secmaster"),
) -> None:
    """Show one run: its settings, metrics and where its HTML tear sheet is."""
    from mbats.cli.output import console, print_json, table
    from mbats.db import connect
    from mbats.errors import UsageError
    from mbats.risk.store import get_run

    if not 1 <= run_id <= 2**63 - 1:
        raise UsageError(f"RUN_ID: must be a positive run id from `mbats runs` (got {run_id})")
    from mbats.redact import mask_secrets

    if html:  # a usage error before any database is touched
        from pathlib import Path

        target = Path(html).expanduser()
        if target.is_dir() or not target.name.lower().endswith((".html", ".htm")):
            raise UsageError(f"--html: give a file name ending in .html (got {html})")

    conn = connect("risk")
    try:
        run = mask_secrets(get_run(conn, run_id))  # runs recorded before secrets were kept out of runs.broker
        from mbats.risk.research import read_montecarlo

        run["montecarlo"] = read_montecarlo(conn, run_id)  # stored by `mbats montecarlo`
    finally:
        conn.close()
    if html:
        from mbats.risk.report import write_report_from_db

        run["report_path"] = str(write_report_from_db(run_id, target.resolve()))
    if as_json:
        print_json(run)
        return
    from mbats.risk.store import describe_sources

    fields = ["strategy", "run_type", "status", "params", "instruments", "granularity", "data_from", "data_to", "bars",
              "cash", "broker", "code_version", "duration_s", "mlflow_run_id", "error"]
    # money is in the run's account currency (backtests: the spec's; paper/live: the broker account's)
    currency = (run.get("broker") or {}).get("account_currency") or "USD"
    rows = [(f, run.get(f)) for f in fields]
    rows[fields.index("cash")] = (f"cash ({currency})", run.get("cash"))
    rows.append(("data sources", describe_sources(run.get("data_sources"))))
    if run.get("model_uri") or run.get("model_name"):  # model-backed strategies: which model, from which run
        rows += [(f, run.get(f) or "missing") for f in ("model_name", "model_version", "model_run_id", "model_uri")]
    table(f"run {run_id}", ["field", "value"], rows)
    from mbats.risk.metrics import MONEY_METRICS

    table("metrics", ["metric", "value"],
          sorted((f"{k} ({currency})" if k in MONEY_METRICS else k, v) for k, v in run["metrics"].items()),
          right=["value"])
    from mbats.cli.research import print_montecarlo

    print_montecarlo(run_id, run["montecarlo"])
    if run.get("report_path"):
        console.print(f"tear sheet (HTML, opens offline): {run['report_path']}")


def demo(no_mlflow: bool = typer.Option(False, "--no-mlflow", help="skip MLflow logging")) -> None:
    """The main job: start PostgreSQL, migrate, load sample data, run the bundled strategies, report."""
    from mbats.demo import run_demo

    run_demo(track=not no_mlflow)
