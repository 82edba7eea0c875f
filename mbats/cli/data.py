"""`mbats data …`: load bars into the security master and see what is there."""

from __future__ import annotations

from pathlib import Path

import typer

from mbats.cli.output import console, print_json, table

app = typer.Typer(help="Security-master data: import files, load samples, list coverage, download, find gaps.",
                  no_args_is_help=True)


def _print_loads(results, as_json: bool) -> None:
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

    Example: mbats data import eurusd_2024.csv -i EUR_USD -g M1 --timezone UTC
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
