"""`mbats live …`: trade (the default: `mbats live STRATEGY …`), reset-kill-switch, sweep-stale.

``mbats live sma_crossover -i EUR_USD …`` still trades: a first word that is not one of the
sub-commands below is the strategy of ``mbats live trade``.

Exit codes of a trading session: 0 it ran its window; 3 stopped by the kill switch (or refused to
start because the account's kill switch is tripped) or by position drift; 130 / 143 stopped by
SIGINT / SIGTERM (run marked ``stopped``); 1 an error (run marked ``failed``).
"""

from __future__ import annotations

import getpass
import json
import socket

import typer
from typer.core import TyperGroup

from mbats.live.cli import live_command


class _DefaultTrade(TyperGroup):
    """A group whose unknown first word is the strategy of the ``trade`` command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["trade", *args]
        return super().parse_args(ctx, args)


live_app = typer.Typer(cls=_DefaultTrade, no_args_is_help=True, add_completion=False,
                       help="Paper/live trading on OANDA v20 (`mbats live STRATEGY -i …`), and its safety switches.")
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
    from mbats.live.persistence import account_key, reset_kill_switch

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
    from mbats.live.persistence import sweep_stale_runs

    conn = connect("risk")
    try:
        conn.autocommit = True
        swept = sweep_stale_runs(conn)
    finally:
        conn.close()
    print(json.dumps([{"run_id": r, "error": why} for r, why in swept]))


def main() -> None:
    """Standalone entry point (``python -m mbats.live.commands``), with the CLI's exit codes."""
    from mbats.cli.main import run

    run(application=live_app, prog_name="mbats live")


if __name__ == "__main__":
    main()
