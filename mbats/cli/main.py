"""Entry point: `mbats --help`. Expected failures print one line and exit non-zero, no traceback."""

from __future__ import annotations

import sys

import click
import typer

from mbats.cli import backtest, data, db, runs
from mbats.errors import MbatsError
from mbats.dashboards.cli import dashboards_app
from mbats.live.cli import live_command
from mbats.marketdata.cli import download_command, gaps_command, sim_app
from mbats.ml.cli import ml_app
from mbats.research.cli import sweep_command

app = typer.Typer(
    name="mbats",
    help="MBATS — systematic FX from data to live trading: security master, backtests, risk DB, MLflow.\n\n"
    "Settings come from MBATS_* environment variables or .env (see .env.example). With none set, "
    "an embedded PostgreSQL is started under .mbats/.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(data.app, name="data")
app.command("backtest")(backtest.backtest)
app.command("runs")(runs.runs)
app.command("report")(runs.report)
app.command("demo")(runs.demo)
app.command("sweep")(sweep_command)
app.command("live")(live_command)

data.app.command("download")(download_command)
data.app.command("gaps")(gaps_command)
app.add_typer(sim_app, name="sim")
app.add_typer(ml_app, name="ml")
app.add_typer(dashboards_app, name="dashboards")


def _fail(message: str, code: int = 1) -> None:
    from mbats.cli.output import err_console

    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _settings_message(exc) -> str:
    problems = [f"MBATS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
    return "invalid setting " + "; ".join(problems) + " (check the environment or .env)"


def run() -> None:
    import psycopg2
    from pydantic import ValidationError

    try:
        app(standalone_mode=False)
    except MbatsError as exc:
        _fail(str(exc))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except ValidationError as exc:
        _fail(_settings_message(exc))
    except psycopg2.Error as exc:
        _fail(f"database error: {str(exc).strip().splitlines()[0]}")


if __name__ == "__main__":
    run()
