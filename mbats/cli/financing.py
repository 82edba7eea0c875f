"""`mbats data financing …`: the financing (rollover) and margin rates backtests and the simulator use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mbats.cli.app import group

app = group(help="Financing and margin rates per instrument: load a CSV, download from OANDA, list.")


def _print_terms(rows: list[dict], as_json: bool) -> None:
    from mbats.cli.output import print_json, table

    if as_json:
        print_json(rows)
        return
    table("financing and margin rates", ["instrument", "from", "long", "short", "margin", "days Mon-Sun", "source"],
          [[r["symbol"], f"{r['effective_from']:%Y-%m-%d}", f"{r['long_rate']:+.4%}", f"{r['short_rate']:+.4%}",
            f"{r['margin_rate']:.2%}", " ".join(map(str, r["days_charged"])), r["source"]] for r in rows],
          right=["long", "short", "margin"])


@app.command("load")
def load_command(
    file: Annotated[Path, typer.Argument(help="CSV: instrument,long_rate,short_rate,margin_rate"
                                         "[,effective_from][,days_charged]; rates annual decimals "
                                         "(-0.0402 = a holder pays 4.02 % a year), days_charged Mon-Sun "
                                         "(default 1 1 3 1 1 0 0).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print what was stored as JSON.")] = False,
) -> None:
    """Load rates from a file; every row is checked first, so a bad file stores nothing."""
    from mbats.db import connect
    from mbats.secmaster.financing import list_terms, read_terms_file, store_terms

    terms = read_terms_file(file)
    conn = connect("secmaster")
    try:
        store_terms(conn, terms)
        symbols = {t.symbol for t in terms}
        _print_terms([r for r in list_terms(conn) if r["symbol"] in symbols], as_json)
    finally:
        conn.close()


@app.command("download")
def download_command(
    instrument: Annotated[Optional[list[str]], typer.Option(
        "--instrument", "-i", help="Only these instruments (repeatable); default every one of the account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was stored as JSON.")] = False,
) -> None:
    """Today's rates from the OANDA account's instruments (``marginRate``, ``financing``), effective today."""
    from mbats.db import connect
    from mbats.marketdata.financing import download_financing
    from mbats.secmaster.financing import list_terms
    from mbats.venues.oanda.client import make_client

    conn = connect("secmaster")
    try:
        terms = download_financing(make_client(), conn, instrument)
        symbols = {t.symbol for t in terms}
        _print_terms([r for r in list_terms(conn) if r["symbol"] in symbols], as_json)
    finally:
        conn.close()


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Every stored row of rates."""
    from mbats.db import connect
    from mbats.secmaster.financing import list_terms

    conn = connect("secmaster")
    try:
        _print_terms(list_terms(conn), as_json)
    finally:
        conn.close()
