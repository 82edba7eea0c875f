"""CLI commands for market data and the OANDA simulator (wired in by ``mbats.cli``).

- ``download_command`` → ``mbats data download``
- ``gaps_command`` → ``mbats data gaps``
- ``sim_app`` (command ``serve``) → ``mbats sim serve``

Expected failures raise :class:`mbats.errors.MbatsError`; the main CLI prints them on one line.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlparse

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from mbats.config import get_settings
from mbats.errors import MbatsError

console = Console(stderr=False, emoji=False)
DEFAULT_GRANULARITY = "M1"


def _utc(value: Optional[str], name: str) -> Optional[pd.Timestamp]:
    from mbats.cli.options import parse_when

    when = parse_when(value, name)  # a usage error (exit 2) for bad or implausible dates
    return None if when is None else pd.Timestamp(when)


def _check_download(instrument: list[str], granularity: list[str], price: str, start, end) -> None:
    """Every download option checked before the first request: instruments, granularities, prices, dates."""
    from mbats.errors import UsageError
    from mbats.secmaster.granularity import GRANULARITIES
    from mbats.specs import DownloadRange, check, check_symbol

    for symbol in instrument:
        try:
            check_symbol(symbol)
        except ValueError as exc:
            raise UsageError(f"--instrument: {exc}") from None
    for gran in granularity:
        if gran not in GRANULARITIES:
            raise UsageError(f"--granularity: unknown granularity '{gran}'; use one of {', '.join(GRANULARITIES)}")
    if not price or set(price) - set("MBA") or len(set(price)) != len(price):
        raise UsageError(f"--price: '{price}' must be letters from M (mid), B (bid), A (ask), each once, e.g. MBA")
    check(DownloadRange, {"start": start, "end": end}, {"start": "--start", "end": "--end"})


def _fmt(ts) -> str:
    return "" if ts is None else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def download_command(
    instrument: Annotated[Optional[list[str]], typer.Option(
        "--instrument", "-i", help="Instrument to download candles for, e.g. EUR_USD (repeatable). "
        "Without any, only the account's instrument list is refreshed.")] = None,
    granularity: Annotated[list[str], typer.Option(
        "--granularity", "-g", help="OANDA granularity: S5 … M1 … H1 … D, W, M (repeatable).")] = [DEFAULT_GRANULARITY],
    start: Annotated[Optional[str], typer.Option(
        help="First bar to fetch (UTC unless an offset is given) when nothing is stored yet, "
        "or to skip ahead. Default: resume after the last stored bar, else one year ago.")] = None,
    end: Annotated[Optional[str], typer.Option(help="Stop before this time (default: now, complete candles only).")] = None,
    price: Annotated[str, typer.Option(
        help="Prices to store: M (mid, always stored), B (bid) and/or A (ask), e.g. MBA.")] = "M",
    instruments_list: Annotated[bool, typer.Option(
        "--instruments/--no-instruments", help="Also refresh the instruments table from the account.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per instrument.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Download candles (and instruments) from OANDA v20 into the security master.

    Incremental and safe to interrupt: every page of up to 5,000 candles is committed as it
    arrives, and the next run resumes right after the last stored bar. Uses
    MBATS_OANDA_ENVIRONMENT (practice | live | sim), MBATS_OANDA_TOKEN and MBATS_OANDA_ACCOUNT_ID.
    """
    from mbats.db import connect
    from mbats.venues.oanda.client import make_client
    from mbats.marketdata.download import download_candles, download_instruments

    start_ts, end_ts = _utc(start, "--start"), _utc(end, "--end")
    _check_download(instrument or [], granularity, price, start_ts, end_ts)
    client = make_client()
    conn = connect("secmaster")
    results, instrument_count = [], None
    try:
        if instruments_list or not instrument:
            instrument_count = len(download_instruments(client, conn))
        for symbol in instrument or []:
            for gran in granularity:
                results.append(download_candles(client, conn, symbol.upper(), gran, start_ts, end_ts, price,
                                                progress=progress and not as_json))
    finally:
        conn.close()
    if as_json:
        typer.echo(json.dumps({"instruments": instrument_count, "downloads": [r.as_dict() for r in results],
                               "requests": client.requests_made, "retries": client.retries}, indent=2))
        return
    if instrument_count is not None:
        console.print(f"instruments: {instrument_count} from the OANDA {client.environment} account")
    if results:
        table = Table("instrument", "granularity", "bars added", "first", "last", "pages", "requests", "seconds")
        for r in results:
            table.add_row(r.symbol, r.granularity, f"{r.bars_added:,}", _fmt(r.first), _fmt(r.last), str(r.pages),
                          str(r.requests), f"{r.seconds:.1f}")
        console.print(table)
        console.print(f"{sum(r.bars_added for r in results):,} bars added with {client.requests_made} requests "
                      f"({client.retries} retried) in {sum(r.seconds for r in results):.1f} s")


def gaps_command(
    instrument: Annotated[str, typer.Argument(help="Instrument, e.g. EUR_USD")],
    granularity: Annotated[str, typer.Option("--granularity", "-g", help="S5 … D")] = DEFAULT_GRANULARITY,
    start: Annotated[Optional[str], typer.Option(help="Check from here (default: first stored bar).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Check up to here (default: after the last stored bar).")] = None,
    min_missing: Annotated[int, typer.Option(help="Only list gaps of at least this many missing bars.")] = 1,
    limit: Annotated[int, typer.Option(help="List at most this many gaps (largest first); 0 = all.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report missing bars against the FX trading week (Sunday 17:00 – Friday 17:00 New York).

    Weekends and the Christmas / New Year closures are not gaps. OANDA sends no candle for a
    period without ticks, so short gaps in S5/M1 data are normal; --min-missing hides them.
    """
    from mbats.db import connect
    from mbats.marketdata.gaps import gap_report

    from mbats.specs import RangeSpec, check

    if min_missing < 1 or limit < 0:
        from mbats.errors import UsageError

        raise UsageError(f"--min-missing must be at least 1 (got {min_missing}) and --limit at least 0 (got {limit})")
    check(RangeSpec, {"start": _utc(start, "--start"), "end": _utc(end, "--end")}, {"start": "--start", "end": "--end"})
    conn = connect("secmaster")
    try:
        report = gap_report(conn, instrument.upper(), granularity, _utc(start, "--start"), _utc(end, "--end"),
                            max(1, min_missing))
    finally:
        conn.close()
    gaps = sorted(report.gaps, key=lambda g: -g.missing_bars)
    shown = gaps[:limit] if limit else gaps
    if as_json:
        out = report.as_dict()
        out["gaps"] = [g.as_dict() for g in shown]
        out["gap_count"] = len(report.gaps)
        typer.echo(json.dumps(out, indent=2))
        return
    if report.expected_bars == 0:
        console.print(f"{report.symbol} {granularity}: no bars stored in that range")
        return
    console.print(f"{report.symbol} {granularity} {_fmt(report.start)} → {_fmt(report.end)}: "
                  f"{report.present_bars:,} of {report.expected_bars:,} trading-week bars "
                  f"({report.coverage:.2%}), {report.missing_bars:,} missing in {len(report.gaps):,} gaps"
                  + (f" of ≥ {min_missing} bars" if min_missing > 1 else ""))
    if shown:
        table = Table("gap start (UTC)", "gap end (UTC)", "missing bars")
        for g in shown:
            table.add_row(_fmt(g.start), _fmt(g.end), f"{g.missing_bars:,}")
        console.print(table)


sim_app = typer.Typer(help="The OANDA v20 simulator: market replay over the v20 REST protocol, on loopback.",
                      no_args_is_help=True)


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
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, parse_speed
    from mbats.sim.data import csv_bars, secmaster_bars, synthetic_bars

    from mbats.errors import UsageError
    from mbats.specs import finite

    settings = get_settings()
    parse_speed(speed)  # fail before loading data
    finite(spread, "--spread", 0, 500)
    finite(balance, "--balance", 0.01, 1e12)
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port: must be from 1 to 65535 (got {port})")
    if source not in ("synthetic", "secmaster", "csv"):
        raise UsageError(f"--source: '{source}' is not synthetic, secmaster or csv")
    symbols = [s.upper() for s in instrument]
    start_ts, end_ts = _utc(start, "--start"), _utc(end, "--end")
    if source == "synthetic":
        end_ts = end_ts or pd.Timestamp.now(tz="UTC").floor("min")
        start_ts = start_ts or end_ts - pd.Timedelta(days=365)
        bars = {s: synthetic_bars(s, start_ts, end_ts, granularity, seed) for s in symbols}
    elif source == "secmaster":
        bars = secmaster_bars(symbols, granularity, start_ts, end_ts)
    elif source == "csv":
        if not csv or len(csv) != len(symbols):
            raise MbatsError("--source csv needs one --csv file per --instrument, in the same order")
        bars = {s: csv_bars(p) for s, p in zip(symbols, csv)}
    else:
        raise MbatsError(f"unknown --source '{source}'; use synthetic, secmaster or csv")

    token = settings.oanda_token.get_secret_value() if settings.oanda_token else DEFAULT_TOKEN
    account = settings.oanda_account_id or DEFAULT_ACCOUNT
    config = SimConfig(token=token, account_id=account, balance=balance, currency=currency.upper(),
                       spread_pips=spread, speed=speed, start=_utc(clock_start, "--clock-start"))
    listen_port = port if port is not None else (urlparse(settings.oanda_sim_url).port or 18080)
    server = SimServer(Simulator(bars, granularity, config), host=host, port=listen_port)
    details = {"url": f"http://{host}:{listen_port}", "account_id": account, "instruments": symbols,
               "granularity": granularity, "speed": speed, "bars": {s: len(b) for s, b in bars.items()},
               "token": "MBATS_OANDA_TOKEN" if settings.oanda_token else DEFAULT_TOKEN}
    if as_json:
        typer.echo(json.dumps(details))
    else:
        console.print(f"OANDA v20 simulator on {details['url']} — account {account}, "
                      f"{', '.join(f'{s} ({n:,} {granularity} bars)' for s, n in details['bars'].items())}, speed {speed}")
        console.print(f"clients: MBATS_OANDA_ENVIRONMENT=sim MBATS_OANDA_SIM_URL={details['url']} "
                      f"MBATS_OANDA_ACCOUNT_ID={account}" + ("" if settings.oanda_token else f" MBATS_OANDA_TOKEN={DEFAULT_TOKEN}"))
    server.serve_forever()
