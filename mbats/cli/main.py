"""Entry point: `mbats --help`. Expected failures print one line and exit non-zero, no traceback.

One module per command group (db, data, backtest, sweep, runs/report/demo, live, sim, ml,
dashboards). Each imports only typer at module level and its libraries inside the command, so
`mbats --help` does not load pandas, backtrader, MLflow, SQLAlchemy or the OANDA client
(bench/bench_cli_help.py measures it).
"""

from __future__ import annotations

import sys

import typer

from mbats.cli.app import group
from typer._click import exceptions as click_exceptions  # typer's own copy of click

from mbats.cli import backtest, data, db, research, runs
from mbats.cli.alerts import alerts_app
from mbats.cli.check import check_app
from mbats.cli.dashboards import dashboards_app
from mbats.cli.live import live_app
from mbats.cli.ml import ml_app
from mbats.cli.sim import sim_app
from mbats.cli.sweep import sweep_command
from mbats.errors import MbatsError

app = group(
    name="mbats",
    help="MBATS — systematic FX from data to live trading: security master, backtests, risk DB, MLflow.\n\n"
    "Settings come from MBATS_* environment variables or .env (see .env.example). With none set, "
    "an embedded PostgreSQL is started under .mbats/.",
)
app.add_typer(db.app, name="db")
app.add_typer(data.app, name="data")
app.command("backtest")(backtest.backtest)
app.command("runs")(runs.runs)
app.command("report")(runs.report)
app.command("demo")(runs.demo)
app.command("sweep")(sweep_command)
app.command("montecarlo")(research.montecarlo)
app.command("walkforward")(research.walkforward)
app.add_typer(live_app, name="live")
app.add_typer(alerts_app, name="alerts")

app.add_typer(sim_app, name="sim")
app.add_typer(ml_app, name="ml")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(check_app, name="check")


def _fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    from mbats.cli.output import err_console

    # The message quotes user input: escape it so "[red]" or ":b:" is printed, not rendered.
    text = " ".join(str(message).split()) or "failed"
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True, emoji=False)
    sys.exit(code)


def _settings_message(exc) -> str:
    problems = [f"MBATS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
    return "invalid setting " + "; ".join(problems) + " (check the environment or .env)"


def _usage_message(exc) -> str:
    """click's usage error as one line, with where to look for the right usage."""
    message = exc.format_message().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{message}{where}"


def _is(exc: BaseException, module: str, name: str) -> bool:
    """isinstance(exc, module.name), without importing the module when no command has loaded it."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(exc, getattr(loaded, name))


def run(argv: list[str] | None = None, application: typer.Typer | None = None, prog_name: str = "mbats") -> None:
    """Run the CLI (or one of its groups on its own): 0 on success, 1 for expected failures,
    2 for usage errors, 130 for Ctrl-C, a command's own code (e.g. 3, 143) where it sets one."""
    from mbats.cli.quiet import install

    install()  # libraries' warnings and progress bars go to the log file, not between the command's output
    try:
        code = (application or app)(args=argv, prog_name=prog_name, standalone_mode=False)
    except MbatsError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exceptions.NoArgsIsHelpError as exc:
        # No sub-command given: the help has been printed; exit 2 as click does, without an error line.
        if exc.format_message().strip():
            print(exc.format_message(), file=sys.stderr)
        sys.exit(2)
    except click_exceptions.UsageError as exc:
        _fail(_usage_message(exc), 2)
    except click_exceptions.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except Exception as exc:
        # Settings and database errors: pydantic / psycopg2 are loaded only by commands that use them.
        if _is(exc, "pydantic", "ValidationError"):
            _fail(_settings_message(exc))
        if _is(exc, "psycopg2", "Error"):
            _fail(f"database error: {str(exc).strip().splitlines()[0]}")
        raise
    # Outside standalone mode typer returns (not raises) the exit code of typer.Exit and of Ctrl-C.
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == 130:
            _fail("interrupted", 130)
        sys.exit(code)


if __name__ == "__main__":
    run()
