"""`mbats sim …`: the OANDA v20 simulator (market replay over the v20 REST protocol, on loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mbats.cli.app import group

from mbats.cli.options import check_window, parse_when, parse_window

DEFAULT_GRANULARITY = "M1"

sim_app = group(help="The OANDA v20 simulator: market replay over the v20 REST protocol, on loopback.")


@sim_app.callback()
def _sim_group() -> None:
    """The OANDA v20 simulator: market replay over the v20 REST protocol, on loopback."""


@sim_app.command("serve")
def serve_command(
    instrument: Annotated[list[str], typer.Option("--instrument", "-i", help="Instrument to replay (repeatable).")] = ["EUR_USD"],
    granularity: Annotated[str, typer.Option("--granularity", "-g", help="Granularity of the replayed bars.")] = DEFAULT_GRANULARITY,
    source: Annotated[str, typer.Option(help="Where bars come from: synthetic (seeded random walk), secmaster, or csv.")] = "synthetic",
    csv: Annotated[Optional[list[Path]], typer.Option(
        help="CSV/Parquet file of bars for --source csv, one per --instrument, in the same order.")] = None,
    start: Annotated[Optional[str], typer.Option(help="First bar to replay (synthetic default: one year before --end).")] = None,
    end: Annotated[Optional[str], typer.Option(help="End of the replayed data (synthetic default: now).")] = None,
    speed: Annotated[str, typer.Option(help="manual (clock moves via /admin/clock/advance), step (one bar per "
                                       "pricing request), realtime, or xN (N times real time).")] = "manual",
    clock_start: Annotated[Optional[str], typer.Option(help="Where the replay clock starts (default: end of data "
                                                       "for manual, start of data otherwise).")] = None,
    spread: Annotated[float, typer.Option(help="Bid/ask spread in pips.")] = 1.0,
    balance: Annotated[float, typer.Option(help="Starting balance of the simulated account.")] = 100_000.0,
    currency: Annotated[str, typer.Option(help="Home currency of the account.")] = "USD",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option(help="Port (default: the port of MBATS_OANDA_SIM_URL).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic random walk.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the connection details as JSON before serving.")] = False,
) -> None:
    """Serve the simulator in the foreground until Ctrl-C.

    Clients use MBATS_OANDA_ENVIRONMENT=sim and MBATS_OANDA_SIM_URL; the Bearer token is
    MBATS_OANDA_TOKEN (or "sim-token" when unset) and the account MBATS_OANDA_ACCOUNT_ID (or the default).
    """
    from urllib.parse import urlparse

    import pandas as pd

    from mbats.config import get_settings
    from mbats.errors import UsageError
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, parse_speed
    from mbats.sim.data import replay_bars
    from mbats.specs import finite

    # Options first (usage errors, exit 2), then the bars, then the server.
    parse_speed(speed)
    finite(spread, "--spread", 0, 500)
    finite(balance, "--balance", 0.01, 1e12)
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port: must be from 1 to 65535 (got {port})")
    start_at, end_at, names = parse_window(start, end)
    check_window(start_at, end_at, names)
    clock_at = parse_when(clock_start, "--clock-start")
    symbols = [s.upper() for s in instrument]
    bars = replay_bars(source, symbols, granularity, start_at, end_at, csv, seed)

    settings = get_settings()
    token = settings.oanda_token.get_secret_value() if settings.oanda_token else DEFAULT_TOKEN
    account = settings.oanda_account_id or DEFAULT_ACCOUNT
    config = SimConfig(token=token, account_id=account, balance=balance, currency=currency.upper(),
                       spread_pips=spread, speed=speed, start=None if clock_at is None else pd.Timestamp(clock_at))
    listen_port = port if port is not None else (urlparse(settings.oanda_sim_url).port or 18080)
    server = SimServer(Simulator(bars, granularity, config), host=host, port=listen_port)
    details = {"url": f"http://{host}:{listen_port}", "account_id": account, "instruments": symbols,
               "granularity": granularity, "speed": speed, "bars": {s: len(b) for s, b in bars.items()},
               "token": "MBATS_OANDA_TOKEN" if settings.oanda_token else DEFAULT_TOKEN}
    if as_json:
        typer.echo(json.dumps(details))
    else:
        from mbats.cli.output import console

        console.print(f"OANDA v20 simulator on {details['url']} — account {account}, "
                      f"{', '.join(f'{s} ({n:,} {granularity} bars)' for s, n in details['bars'].items())}, speed {speed}")
        console.print(f"clients: MBATS_OANDA_ENVIRONMENT=sim MBATS_OANDA_SIM_URL={details['url']} "
                      f"MBATS_OANDA_ACCOUNT_ID={account}" + ("" if settings.oanda_token else f" MBATS_OANDA_TOKEN={DEFAULT_TOKEN}"))
    server.serve_forever()
