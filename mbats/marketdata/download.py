"""Download instruments and candles from OANDA v20 into the security master.

Candles are fetched forward from the last stored bar in pages of OANDA's 5,000-candle maximum
(``from`` + ``count``, ``includeFirst=false`` when resuming), and each page is validated, written
and committed on its own: a run killed half-way loses at most the page in flight, and the next
run starts right after the last committed bar, so there is neither a gap nor a duplicate.
Only complete candles are stored; the candle still forming is fetched again next time.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import pandas as pd
from tqdm import tqdm

from mbats.errors import MbatsError, NotFoundError
from mbats.marketdata.calendar import trading_bar_times
from mbats.secmaster import get_instrument_id, upsert_instruments, write_bars, write_sides
from mbats.secmaster.bars import last_bar_time
from mbats.secmaster.granularity import check_granularity
from mbats.secmaster.loads import finish_load, start_load
from mbats.venues.oanda.candles import check_price, fetch_candles
from mbats.venues.oanda.client import OandaClient
from mbats.venues.oanda.instruments import fetch_instruments, fx_instrument, provenance

MAX_COUNT = 5000  # OANDA's maximum candles per request
DEFAULT_HISTORY = pd.Timedelta(days=365)


@dataclass
class DownloadResult:
    symbol: str
    granularity: str
    bars_added: int
    bars_updated: int
    first: pd.Timestamp | None  # first bar written by this run
    last: pd.Timestamp | None  # last bar written by this run
    pages: int
    requests: int
    seconds: float

    def as_dict(self) -> dict:
        out = asdict(self)
        out["first"] = self.first.isoformat() if self.first is not None else None
        out["last"] = self.last.isoformat() if self.last is not None else None
        out["seconds"] = round(self.seconds, 3)
        return out


def _oanda_time(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(t: datetime | str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def download_instruments(client: OandaClient, conn, currency_only: bool = True) -> dict[str, int]:
    """The account's tradeable instruments into ``instruments`` (idempotent); {symbol: id}."""
    ids = upsert_instruments(conn, fetch_instruments(client, currency_only))
    conn.commit()
    return ids


def _instrument_id(conn, symbol: str, client: OandaClient) -> int:
    try:
        return get_instrument_id(conn, symbol)
    except NotFoundError:
        # an FX pair nobody listed yet: register it rather than make the user run two commands
        ids = upsert_instruments(conn, [fx_instrument(client, symbol)])
        conn.commit()
        return ids[symbol.upper()]


def download_candles(
    client: OandaClient,
    conn,
    symbol: str,
    granularity: str = "M1",
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    price: str = "MBA",  # bid and ask too: backtests fill at them when stored
    progress: bool = True,
    page_size: int = MAX_COUNT,
) -> DownloadResult:
    """Fetch complete candles up to ``end`` / now, resuming after the last bar stored in the window.

    Without ``start`` this is incremental from the last stored bar; with ``start`` it fills the
    window ``[start, end)`` however much later data is already stored.
    """
    check_granularity(granularity)
    price = check_price(price)
    page_size = max(1, min(page_size, MAX_COUNT))
    started = time.monotonic()
    requests_before = client.requests_made
    instrument_id = _instrument_id(conn, symbol, client)
    end_ts = _utc(end) if end is not None else None
    start_ts = _utc(start) if start is not None else None
    # Resume after the last bar stored inside the requested window, so re-running an older
    # window (a backfill) still fetches it even when later bars are already stored.
    last_stored = last_bar_time(conn, instrument_id, granularity, start_ts, end_ts)
    conn.commit()  # do not hold a transaction open while waiting on the network

    hole = _first_hole(conn, instrument_id, granularity, start_ts, _utc(last_stored)) \
        if start_ts is not None and last_stored is not None else None
    conn.commit()
    if hole is not None:
        cursor, include_first = hole, True  # a stored bar later in the window must not hide a hole before it
    elif last_stored is not None:
        cursor, include_first = _utc(last_stored), False  # resume right after the last stored bar
    else:
        cursor = start_ts if start_ts is not None else pd.Timestamp.now(tz="UTC") - DEFAULT_HISTORY
        include_first = True

    estimate = _estimate(cursor, end_ts, granularity)
    bar = tqdm(total=estimate, unit="bar", desc=f"{symbol} {granularity}", disable=not progress, leave=True,
               dynamic_ncols=True)
    added = updated = pages = 0
    first = last = load_id = None
    try:
        while end_ts is None or cursor < end_ts:
            params = {"granularity": granularity, "price": price, "count": page_size,
                      "from": _oanda_time(cursor), "includeFirst": "true" if include_first else "false"}
            page = fetch_candles(client, symbol, source=f"OANDA {symbol} {granularity} candles from {params['from']}",
                                 **params)
            mid = page.mid
            if end_ts is not None and not mid.empty:
                keep = (mid["ts"] < end_ts).to_numpy()
                mid = mid[keep]
                page.sides = {k: v[keep] for k, v in page.sides.items()}
            if not mid.empty:
                try:
                    if load_id is None:  # created with the first page, so an empty download leaves no load
                        load_id = start_load(conn, instrument_id, granularity, provenance(client))
                    result = write_bars(conn, instrument_id, granularity, mid, load_id)
                    finish_load(conn, load_id, result.inserted + result.updated, mid["ts"].iloc[0], mid["ts"].iloc[-1])
                    if page.sides:
                        write_sides(conn, instrument_id, granularity, page.sides)
                    conn.commit()  # one page, one transaction: a kill loses at most this page
                except BaseException:
                    conn.rollback()
                    raise
                pages += 1
                added += result.inserted
                updated += result.updated
                first = mid["ts"].iloc[0] if first is None else first
                last = mid["ts"].iloc[-1]
                cursor, include_first = last, False
                bar.update(len(mid))
            if page.returned < page_size or page.had_incomplete or mid.empty:
                break  # reached the present (or the candle still forming) or `end`
    finally:
        bar.close()
    return DownloadResult(symbol, granularity, added, updated, first, last, pages,
                          client.requests_made - requests_before, time.monotonic() - started)


def _first_hole(conn, instrument_id: int, granularity: str, start: pd.Timestamp,
                last: pd.Timestamp) -> pd.Timestamp | None:
    """Open time of the first run of missing bars in ``[start, last]`` worth fetching, else None.

    Runs shorter than an hour of trading time are left alone: OANDA sends no candle for a minute in
    which nothing traded, and refetching those on every run would cost a request each.
    """
    from mbats.marketdata.calendar import step_of
    from mbats.marketdata.gaps import find_gaps
    from mbats.secmaster.bars import bar_times

    try:
        step = step_of(granularity)
    except MbatsError:
        return None  # weekly / monthly candles have no fixed step to measure holes with
    present = bar_times(conn, instrument_id, granularity, start, last + step)
    min_missing = max(1, math.ceil(pd.Timedelta(hours=1) / step))
    report = find_gaps(present, granularity, start, last + step, min_missing=min_missing)
    return report.gaps[0].start if report.gaps else None


def _estimate(start: pd.Timestamp, end: pd.Timestamp | None, granularity: str) -> int | None:
    """Bars the trading calendar expects, for the progress bar (None for W / M)."""
    if granularity in ("W", "M"):
        return None
    try:
        return len(trading_bar_times(start, end or pd.Timestamp.now(tz=timezone.utc), granularity, holidays=False))
    except Exception:  # an estimate only; never let it break a download
        return None
