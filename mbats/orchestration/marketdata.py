"""Market-data downloads over a fixed data interval, one instrument per call (Airflow maps them).

Re-running an interval is idempotent: candles already stored are skipped (the downloader resumes
after the last stored bar and ``write_bars`` upserts), so bar counts do not change.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

DEFAULT_INSTRUMENTS = ("EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD")


def configured_instruments() -> list[str]:
    """Instruments the scheduled downloads fetch: ``MBATS_MARKETDATA_INSTRUMENTS`` (comma separated)."""
    from mbats.config import Settings

    raw = Settings().marketdata_instruments
    symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
    return symbols or list(DEFAULT_INSTRUMENTS)


def _utc(t) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry cannot fix: an unknown instrument (OANDA answers 400/404), settings, credentials, bad data.

    The OANDA client already retried 429s, 5xx and timeouts; what is left of those surfaces as
    :class:`ServiceUnavailableError`, which Airflow may retry later.
    """
    from mbats.errors import MbatsError, ServiceUnavailableError

    return isinstance(exc, MbatsError) and not isinstance(exc, ServiceUnavailableError)


def sync_instruments() -> int:
    """Refresh the instrument list from the account; return how many there are."""
    from mbats.db import connect
    from mbats.venues.oanda.client import make_client
    from mbats.marketdata.download import download_instruments

    conn = connect("secmaster")
    try:
        return len(download_instruments(make_client(), conn))
    finally:
        conn.close()


def download_interval(symbol: str, granularity: str, start: datetime | str, end: datetime | str) -> dict:
    """Candles of one instrument in [start, end) into the security master; a JSON-able summary."""
    from mbats.db import connect
    from mbats.venues.oanda.client import make_client
    from mbats.marketdata.download import download_candles

    conn = connect("secmaster")
    try:
        result = download_candles(make_client(), conn, symbol, granularity, start=_utc(start), end=_utc(end),
                                  progress=False)
    finally:
        conn.close()
    return result.as_dict() | {"interval_start": _utc(start).isoformat(), "interval_end": _utc(end).isoformat()}


def gaps_for(symbols: list[str], granularity: str, start, end, min_missing: int = 1) -> dict:
    """Gap report of every symbol over [start, end): {symbol: report dict}, plus totals."""
    from mbats.db import connect
    from mbats.marketdata.gaps import find_gaps, gap_report

    conn = connect("secmaster")
    reports = {}
    try:
        for symbol in symbols:
            try:
                report = gap_report(conn, symbol, granularity, _utc(start), _utc(end), min_missing)
                if report.present_bars == 0:  # nothing stored: the whole trading part of the interval is a gap
                    empty = pd.DatetimeIndex([], tz="UTC")
                    report = find_gaps(empty, granularity, _utc(start), _utc(end), min_missing, symbol)
                reports[symbol] = report.as_dict()
            except Exception as exc:  # one unknown symbol must not hide the others' reports
                conn.rollback()
                reports[symbol] = {"symbol": symbol, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    return {
        "granularity": granularity,
        "start": _utc(start).isoformat(),
        "end": _utc(end).isoformat(),
        "missing_bars": sum(r.get("missing_bars", 0) for r in reports.values()),
        "instruments_with_gaps": sorted(s for s, r in reports.items() if r.get("missing_bars") or r.get("error")),
        "reports": reports,
    }
