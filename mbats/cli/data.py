"""`mbats data …`: load bars into the security master and see what is there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mbats.cli.app import group
from mbats.cli.financing import app as financing_app
from mbats.cli.options import check_window, parse_window

DEFAULT_GRANULARITY = "M1"

app = group(help="Security-master data: import files, load samples, list coverage, download, find gaps, "
                 "financing rates.")
app.add_typer(financing_app, name="financing")


def _print_loads(results, as_json: bool) -> None:
    from mbats.cli.output import print_json, table

    rows = [{"source": r.source, "instrument": r.symbol, "granularity": r.granularity, "rows": r.rows,
             "inserted": r.written.inserted, "updated": r.written.updated, "unchanged": r.written.unchanged,
             "first": r.first, "last": r.last} for r in results]
    if as_json:
        print_json(rows)
        return
    table("bars loaded", ["source", "instrument", "gran", "rows", "inserted", "updated", "unchanged", "first", "last"],
          [list(r.values()) for r in rows], right=["rows", "inserted", "updated", "unchanged"])


def _check_import_options(instrument: str, granularity: str, timezone: str | None, vendor: str,
                          time_unit: str | None, files: list[Path]) -> None:
    """Usage errors (exit 2) before any file is read or any connection made."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from mbats.errors import UsageError
    from mbats.secmaster.granularity import GRANULARITIES
    from mbats.secmaster.validate import EPOCH_UNITS
    from mbats.specs import check_symbol

    try:
        check_symbol(instrument)
    except ValueError as exc:
        raise UsageError(f"--instrument: {exc}") from None
    if granularity not in GRANULARITIES:
        raise UsageError(f"--granularity: unknown granularity '{granularity}'; use one of {', '.join(GRANULARITIES)}")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"--timezone: '{timezone}' is not a time zone such as UTC or Europe/London") from None
    if time_unit is not None and time_unit not in EPOCH_UNITS:
        raise UsageError(f"--time-unit: '{time_unit}' is not one of {', '.join(EPOCH_UNITS)}")
    if not vendor.strip() or len(vendor) > 100:
        raise UsageError("--vendor: give a short name of where the data came from (1 to 100 characters)")
    for path in files:
        if not path.is_file():
            raise UsageError(f"FILES: {path} does not exist or is not a file")


@app.command("import")
def import_(
    files: list[Path] = typer.Argument(..., help="CSV or Parquet files with time, open, high, low, close[, volume]"),
    instrument: str = typer.Option(..., "--instrument", "-i", help="symbol such as EUR_USD (created if new)"),
    granularity: str = typer.Option(..., "--granularity", "-g", help="OANDA code: M1, M5, H1, D, …"),
    timezone: str = typer.Option(None, "--timezone", help="zone of naive timestamps, e.g. UTC; without it naive times are rejected"),
    vendor: str = typer.Option("file", help="where the data came from, recorded on the instrument"),
    time_unit: str = typer.Option(None, "--time-unit",
                                  help="numeric times are epoch s, ms, us or ns (default: told from their size)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """Validate and load bar files. All files are checked first; any broken rule loads nothing.

    \b
    Example:
    mbats data import eurusd_2024.csv -i EUR_USD -g M1 --timezone UTC
    """
    from mbats.db import connect
    from mbats.secmaster.ingest import import_files

    _check_import_options(instrument, granularity, timezone, vendor, time_unit, files)
    conn = connect("secmaster")
    try:
        _print_loads(import_files(conn, files, instrument, granularity, vendor, timezone, time_unit), as_json)
    finally:
        conn.close()


@app.command("sample")
def sample(as_json: bool = typer.Option(False, "--json", help="print machine-readable results")) -> None:
    """Load the sample data: real EUR/USD H1 bars (2017–2018) and synthetic M1 bars for GBP/AUD/NZD vs USD."""
    from mbats.db import connect
    from mbats.secmaster.samples import load_samples

    conn = connect("secmaster")
    try:
        _print_loads(load_samples(conn), as_json)
    finally:
        conn.close()


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="print machine-readable results")) -> None:
    """Instruments and their bar coverage per granularity."""
    from mbats.cli.output import console, print_json, table
    from mbats.db import connect
    from mbats.secmaster.bars import coverage

    conn = connect("secmaster")
    try:
        rows = coverage(conn)
    finally:
        conn.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no bars yet: try `mbats data sample` or `mbats data import`")
        return
    table("security master", ["instrument", "gran", "bars", "first", "last", "sources", "synthetic"],
          [(r["symbol"], r["granularity"], r["bars"], r["first"], r["last"], r["vendor"], r["synthetic"])
           for r in rows], right=["bars"])


def _check_instruments_and_granularities(instruments: list[str], granularities: list[str]) -> None:
    from mbats.errors import UsageError
    from mbats.secmaster.granularity import GRANULARITIES
    from mbats.specs import check_symbol

    for symbol in instruments:
        try:
            check_symbol(symbol)
        except ValueError as exc:
            raise UsageError(f"--instrument: {exc}") from None
    for gran in granularities:
        if gran not in GRANULARITIES:
            raise UsageError(f"--granularity: unknown granularity '{gran}'; use one of {', '.join(GRANULARITIES)}")


def _fmt(ts) -> str:
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


@app.command("download")
def download(
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
        help="Prices to store: M (mid, always stored), B (bid) and/or A (ask); backtests fill at stored bid/ask.")] = "MBA",
    instruments_list: Annotated[bool, typer.Option(
        "--instruments/--no-instruments", help="Also refresh the instruments table from the account.")] = False,
    progress: Annotated[Optional[bool], typer.Option(
        "--progress/--no-progress",
        help="Show a progress bar per instrument (default: when stderr is a terminal, not in scripts).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Download candles (and instruments) from OANDA v20 into the security master.

    Incremental and safe to interrupt: every page of up to 5,000 candles is committed as it
    arrives, and the next run resumes right after the last stored bar. Uses
    MBATS_OANDA_ENVIRONMENT (practice | live | sim), MBATS_OANDA_TOKEN and MBATS_OANDA_ACCOUNT_ID.
    """
    from mbats.errors import UsageError
    from mbats.specs import DownloadRange, check

    # Every option checked before the first request: instruments, granularities, prices, dates.
    start_at, end_at, names = parse_window(start, end)
    _check_instruments_and_granularities(instrument or [], granularity)
    if not price or set(price) - set("MBA") or len(set(price)) != len(price):
        raise UsageError(f"--price: '{price}' must be letters from M (mid), B (bid), A (ask), each once, e.g. MBA")
    check(DownloadRange, {"start": start_at, "end": end_at}, names)

    import pandas as pd

    from mbats.db import connect
    from mbats.marketdata.download import download_candles, download_instruments
    from mbats.venues.oanda.client import make_client

    start_ts = None if start_at is None else pd.Timestamp(start_at)
    end_ts = None if end_at is None else pd.Timestamp(end_at)
    client = make_client()
    conn = connect("secmaster")
    results, instrument_count = [], None
    try:
        if instruments_list or not instrument:
            instrument_count = len(download_instruments(client, conn))
        for symbol in instrument or []:
            for gran in granularity:
                results.append(download_candles(client, conn, symbol.upper(), gran, start_ts, end_ts, price,
                                                progress=(sys.stderr.isatty() if progress is None else progress)
                                                and not as_json))
    finally:
        conn.close()
    from mbats.cli.output import console, print_json, table

    if as_json:
        print_json({"instruments": instrument_count, "downloads": [r.as_dict() for r in results],
                    "requests": client.requests_made, "retries": client.retries})
        return
    if instrument_count is not None:
        console.print(f"instruments: {instrument_count} from the OANDA {client.environment} account")
    if results:
        table("downloads", ["instrument", "granularity", "bars added", "first", "last", "pages", "requests", "seconds"],
              [(r.symbol, r.granularity, r.bars_added, _fmt(r.first), _fmt(r.last), r.pages, r.requests,
                round(r.seconds, 1)) for r in results],
              right=["bars added", "pages", "requests", "seconds"])
        console.print(f"{sum(r.bars_added for r in results):,} bars added with {client.requests_made} requests "
                      f"({client.retries} retried) in {sum(r.seconds for r in results):.1f} s")


@app.command("gaps")
def gaps(
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
    from mbats.errors import UsageError

    if min_missing < 1 or limit < 0:
        raise UsageError(f"--min-missing must be at least 1 (got {min_missing}) and --limit at least 0 (got {limit})")
    start_at, end_at, names = parse_window(start, end)
    check_window(start_at, end_at, names)

    import pandas as pd

    from mbats.db import connect
    from mbats.marketdata.gaps import gap_report

    conn = connect("secmaster")
    try:
        report = gap_report(conn, instrument.upper(), granularity,
                            None if start_at is None else pd.Timestamp(start_at),
                            None if end_at is None else pd.Timestamp(end_at), min_missing)
    finally:
        conn.close()
    from mbats.cli.output import console, print_json, table

    gaps_found = sorted(report.gaps, key=lambda g: -g.missing_bars)
    shown = gaps_found[:limit] if limit else gaps_found
    if as_json:
        out = report.as_dict()
        out["gaps"] = [g.as_dict() for g in shown]
        out["gap_count"] = len(report.gaps)
        print_json(out)
        return
    if report.expected_bars == 0:
        console.print(f"{report.symbol} {granularity}: no bars stored in that range")
        return
    console.print(f"{report.symbol} {granularity} {_fmt(report.start)} → {_fmt(report.end)}: "
                  f"{report.present_bars:,} of {report.expected_bars:,} trading-week bars "
                  f"({report.coverage:.2%}), {report.missing_bars:,} missing in {len(report.gaps):,} gaps"
                  + (f" of ≥ {min_missing} bars" if min_missing > 1 else ""))
    if shown:
        table("gaps", ["gap start (UTC)", "gap end (UTC)", "missing bars"],
              [(_fmt(g.start), _fmt(g.end), g.missing_bars) for g in shown], right=["missing bars"])
