"""`mbats live …`: trade (the default: `mbats live STRATEGY …`), status, stop, flatten, reset-kill-switch,
sweep-stale.

``mbats live sma_crossover -i EUR_USD …`` trades: a first word that is not one of the sub-commands
is the strategy of ``mbats live trade``. ``python -m mbats.cli.live …`` runs the group on its own
(the tests' subprocess runner does).

Exit codes of a trading session: 0 it ran its window (or `mbats live stop|flatten` stopped it); 3
stopped by the kill switch (or refused to start because the account's kill switch is tripped) or by
position drift; 130 / 143 stopped by SIGINT / SIGTERM (run marked ``stopped``); 1 an error (run
marked ``failed``).
"""

from __future__ import annotations

import getpass
import json
import logging
import socket

import typer

from mbats.cli.app import Group, group
from mbats.cli.options import parse_when


class _DefaultTrade(Group):
    """A group whose unknown first word is the strategy of the ``trade`` command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["trade", *args]
        return super().parse_args(ctx, args)


live_app = group("Paper/live trading on OANDA v20 (`mbats live STRATEGY -i …`), and its safety switches.",
                 cls=_DefaultTrade)


def live_command(
    strategy: str = typer.Argument(..., help="strategy name, as for `mbats backtest` (sma_crossover, rsi_atr, …)"),
    instruments: list[str] = typer.Option(..., "--instrument", "-i", help="OANDA instrument, repeat for several"),
    mode: str = typer.Option("paper", "--mode", "-m",
                             help="paper (simulator or practice account) | live (real money; needs confirmation)"),
    param: list[str] = typer.Option([], "--param", "-p", help="strategy parameter name=value, repeatable"),
    granularity: str = typer.Option("M1", "--granularity", "-g", help="bar size the strategy trades on"),
    model_alias: str = typer.Option(None, "--model-alias",
                                    help="registered model for model strategies, e.g. models:/mbats-fx-direction@champion"),
    until: str = typer.Option(None, "--until", help="stop once the bars reach this UTC time (session end)"),
    bars: int = typer.Option(None, "--bars", help="stop after this many live bars"),
    warmup: int = typer.Option(200, "--warmup", help="historical bars backfilled before trading"),
    units: int = typer.Option(10_000, "--units", help="units per order (fixed sizer, as in backtests)"),
    session_key: str = typer.Option(None, "--session",
                                    help="session id; running again with the same id resumes the same run"),
    account: str = typer.Option(None, "--account", help="OANDA account id (default MBATS_OANDA_ACCOUNT_ID)"),
    confirm_live: bool = typer.Option(False, "--confirm-live",
                                      # the phrase is mbats.live.config.LIVE_CONFIRMATION (tests/cli keep them equal);
                                      # importing it here would load the live package for `--help`
                                      help="required with --mode live (or MBATS_LIVE_CONFIRM=yes-i-mean-real-money)"),
    sim_step: bool = typer.Option(False, "--sim-step",
                                  help="simulator only: advance its replay clock one bar after each bar (fast replay)"),
    max_units: float = typer.Option(None, "--max-units", help="risk: max |units| per instrument (MBATS_LIVE_MAX_UNITS)"),
    max_gross: float = typer.Option(None, "--max-gross-exposure",
                                    help="risk: max gross notional in account currency (MBATS_LIVE_MAX_GROSS_EXPOSURE)"),
    max_orders: int = typer.Option(None, "--max-orders-per-minute",
                                   help="risk: max orders in any minute (MBATS_LIVE_MAX_ORDERS_PER_MINUTE)"),
    max_loss: float = typer.Option(None, "--max-daily-loss",
                                   help="risk: daily loss that flattens and stops (MBATS_LIVE_MAX_DAILY_LOSS)"),
    webhook: str = typer.Option(None, "--risk-webhook", help="URL risk breaches are POSTed to (MBATS_LIVE_RISK_WEBHOOK_URL)"),
    track: bool = typer.Option(None, "--mlflow/--no-mlflow",
                               help="log the session to MLflow when it ends (default: on when "
                                    "MBATS_MLFLOW_TRACKING_URI is set, as on the stack)"),
    as_json: bool = typer.Option(False, "--json", help="print the session summary as JSON"),
) -> None:
    """Paper- or live-trade a strategy on OANDA v20; every order, fill, trade and bar goes to the risk DB.

    Credentials come from MBATS_OANDA_TOKEN / MBATS_OANDA_ACCOUNT_ID / MBATS_OANDA_ENVIRONMENT
    (practice | live | sim). At start the runner reconciles the account with the risk DB (the
    broker wins) and resumes the run of the same --session, so a restart never sends an order twice.

    \b
    Example:
    mbats live sma_crossover -i EUR_USD -g M5 --mode paper -p fast=10 -p slow=30 --until 2024-03-05T16:00Z
    """
    from dataclasses import replace

    from mbats.config import get_settings
    from mbats.kernel.limits import RiskLimits
    from mbats.kernel.strategies import parse_param_options
    from mbats.live.config import LiveConfig
    from mbats.live.session import run
    from mbats.specs import LIVE_OPTIONS, LiveOptions, check, check_strategy_params

    # Ranges first (one usage error naming the option), before settings, the broker or the risk DB.
    check(LiveOptions, dict(mode=mode, warmup=warmup, units=units, bars=bars, max_units=max_units, max_gross=max_gross,
                            max_orders=max_orders, max_loss=max_loss, webhook=webhook, instruments=list(instruments),
                            granularity=granularity), LIVE_OPTIONS)
    check_strategy_params(strategy, parse_param_options(param))
    session_end = parse_when(until, "--until")
    settings = get_settings()
    # An option given on the command line overrides its MBATS_LIVE_* setting.
    overrides = dict(max_units=max_units, max_gross_exposure=max_gross, max_orders_per_minute=max_orders,
                     max_daily_loss=max_loss, webhook_url=webhook or None)
    risk = replace(RiskLimits.from_settings(settings), **{k: v for k, v in overrides.items() if v is not None})
    if account:
        settings = settings.model_copy(update={"oanda_account_id": account})
    cfg = LiveConfig(strategy=strategy, instruments=[i.upper() for i in instruments], mode=mode,
                     params=parse_param_options(param), granularity=granularity, until=session_end, max_bars=bars,
                     warmup=warmup, units=units, session_key=session_key, model_alias=model_alias, sim_step=sim_step,
                     confirm_live=confirm_live, track=bool(settings.mlflow_tracking_uri) if track is None else track)
    result = run(cfg, risk=risk, settings=settings)
    summary = {"run_id": result.run_id, "status": result.status, "mode": mode, "resumed": result.resumed,
               "live_bars": result.live_bars, "breaches": [b.rule for b in result.breaches],
               "reconciliation": result.reconciliation.to_json()}
    if result.status != "finished":
        summary["stop_reason"] = result.stop_reason
    print(json.dumps(summary, indent=None if as_json else 2, default=str))
    if result.exit_code:  # stopped by the kill switch (3) or a signal (128 + n): not a clean finish
        raise typer.Exit(result.exit_code)


live_app.command("trade")(live_command)


@live_app.command("reset-kill-switch")
def reset_kill_switch_command(
    account: str = typer.Option(None, "--account", help="OANDA account id (default MBATS_OANDA_ACCOUNT_ID)"),
    by: str = typer.Option(None, "--by", help="who resets it (default: the OS user @ host)"),
    note: str = typer.Option(None, "--note", help="why, for the record"),
) -> None:
    """Clear a tripped kill switch so the account may trade again; who and when go to the risk DB."""
    from mbats.config import get_settings
    from mbats.db import connect
    from mbats.errors import ConfigError, MbatsError
    from mbats.risk.live import account_key, reset_kill_switch

    settings = get_settings()
    if account:
        settings = settings.model_copy(update={"oanda_account_id": account})
    if not settings.oanda_account_id:
        raise ConfigError("no OANDA account id: pass --account or set MBATS_OANDA_ACCOUNT_ID")
    key = account_key(settings)
    who = by or f"{getpass.getuser()}@{socket.gethostname()}"
    conn = connect("risk")
    try:
        old = reset_kill_switch(conn, key, who, note)
    finally:
        conn.close()
    if old is None:
        raise MbatsError(f"the kill switch of {key} is not tripped; nothing to reset")
    print(json.dumps({"account": key, "reset_by": who, "was_tripped_at": old["tripped_at"],
                      "reason": old["reason"]}, default=str))


@live_app.command("sweep-stale")
def sweep_stale_command() -> None:
    """Mark `failed` the running paper/live runs on this host whose runner process is gone."""
    from mbats.db import connect
    from mbats.risk.live import sweep_stale_runs

    conn = connect("risk")
    try:
        conn.autocommit = True
        swept = sweep_stale_runs(conn)
    finally:
        conn.close()
    print(json.dumps([{"run_id": r, "error": why} for r, why in swept]))


def _risk_conn():
    from mbats.db import connect

    return connect("risk")


@live_app.command("status")
def status_command(
    run_id: int = typer.Argument(None, help="one run (any status); default: every running paper/live session"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Running sessions: host and pid, positions, P&L, kill switch, last bar, pending stop/flatten requests."""
    from mbats.cli.output import fmt, print_json, table
    from mbats.live.control import sessions

    conn = _risk_conn()
    try:
        found = sessions(conn, run_id)
    finally:
        conn.close()
    if run_id is not None and not found:
        from mbats.errors import MbatsError

        raise MbatsError(f"no run {run_id} in the risk DB")
    if as_json:
        print_json(found)
        return
    rows = [(s["run_id"], s["strategy"], s["mode"], s["status"], f"{s['host']}:{s['pid']}",
             {True: "yes", False: "GONE", None: "?"}[s["process_alive"]],
             " ".join(f"{i} {p['units']:+,.0f}" for i, p in s["positions"].items() if p["units"]) or "flat",
             fmt(s["pnl"]), "TRIPPED" if s["kill_switch"]["tripped"] else "ok",
             f"{s['last_bar']:%Y-%m-%d %H:%M}" if s["last_bar"] else "-", ",".join(s["pending_commands"]) or "-")
            for s in found]
    table("live sessions", ["run", "strategy", "mode", "status", "host:pid", "alive", "positions", "P&L",
                            "kill switch", "last bar (UTC)", "pending"], rows, right=["P&L"])


@live_app.command("stop")
def stop_command(
    run_id: int = typer.Argument(..., help="run id of the running session (see `mbats live status`)"),
    wait: float = typer.Option(120.0, "--wait", help="seconds to wait for the session to stop (0: do not wait)"),
) -> None:
    """Ask a running session to stop after the bar in hand (positions left as they are; run marked stopped).

    Works across hosts and containers: the request is a row in the risk DB that the session polls.
    """
    _control(run_id, "stop", wait)


@live_app.command("flatten")
def flatten_command(
    run_id: int = typer.Argument(None, help="run id of the running session; omit with --account to flatten "
                                            "directly at the venue"),
    account: str = typer.Option(None, "--account", help="no session: flatten this OANDA account directly "
                                                        "(default MBATS_OANDA_ACCOUNT_ID)"),
    yes: bool = typer.Option(False, "--yes", help="confirm a direct flatten at the venue (no session involved)"),
    wait: float = typer.Option(120.0, "--wait", help="seconds to wait for the session to flatten and stop"),
) -> None:
    """Close positions and cancel pending orders: through the running session (which then stops), or
    with no session, directly at the venue (needs --yes)."""
    from mbats.errors import UsageError

    if run_id is not None:
        _control(run_id, "flatten", wait)
        return
    from mbats.config import get_settings
    from mbats.live.control import flatten_venue

    settings = get_settings()
    if account:
        settings = settings.model_copy(update={"oanda_account_id": account})
    if not yes:
        raise UsageError("flattening an account directly at the venue closes every position: pass --yes "
                          "(or give the run id of a running session)")
    left = flatten_venue(settings)
    print(json.dumps({"account": settings.oanda_account_id, "environment": settings.oanda_environment,
                      "flat": not left, "positions_left": left}, default=str))
    if left:
        raise typer.Exit(1)


def _control(run_id: int, command: str, wait: float) -> None:
    from mbats.errors import MbatsError
    from mbats.live.control import request, sessions, wait_for_end

    conn = _risk_conn()
    try:
        out = request(conn, run_id, command)
        if wait > 0:
            out["status"] = wait_for_end(conn, run_id, wait)
            if out["status"] != "running":
                out["session"] = sessions(conn, run_id)[0]
    finally:
        conn.close()
    print(json.dumps(out, default=str))
    if wait > 0 and out["status"] == "running":
        raise MbatsError(f"run {run_id} is still running {wait:g} s after the {command} request "
                         f"(request {out['request_id']} stays queued for it)")


def main() -> None:
    """Standalone entry point (``python -m mbats.cli.live``), with the CLI's error lines and exit codes."""
    from mbats.cli.main import run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("oandapyV20").setLevel(logging.CRITICAL)  # it logs expected 404s (client-id lookups)
    run(application=live_app, prog_name="mbats live")


if __name__ == "__main__":
    main()
