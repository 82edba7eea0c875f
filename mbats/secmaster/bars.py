"""Bulk bar I/O through PostgreSQL's binary COPY, straight to and from numpy columns.

Writes stage the bars in a temporary table with one binary COPY, then upsert them into ``bars``
in the caller's transaction: re-loading the same data changes nothing, corrected bars are
updated. Reads use ``COPY … TO STDOUT (FORMAT binary)``: every row has the same fixed width, so
the whole result is parsed by one ``numpy.frombuffer`` call, never row by row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from mbats.secmaster.instruments import get_instrument_id

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds: binary timestamptz origin
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_FIELDS = ("ts", "open", "high", "low", "close", "volume")
_ROW = np.dtype(
    [("nfields", ">i2")]
    + [
        field
        for name in _FIELDS
        for field in ((f"len_{name}", ">i4"), (name, ">i8" if name in ("ts", "volume") else ">f8"))
    ]
)


@dataclass(frozen=True)
class BarWriteResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def _to_copy_binary(bars: pd.DataFrame) -> bytes:
    rows = np.empty(len(bars), dtype=_ROW)
    rows["nfields"] = len(_FIELDS)
    for name in _FIELDS:
        rows[f"len_{name}"] = 8
    ts_us = bars["ts"].dt.as_unit("us").astype("int64").to_numpy() if hasattr(bars["ts"], "dt") else bars["ts"]
    rows["ts"] = ts_us - PG_EPOCH_US
    for name in ("open", "high", "low", "close"):
        rows[name] = bars[name].to_numpy(dtype="float64")
    rows["volume"] = bars["volume"].to_numpy(dtype="int64")
    return _HEADER + rows.tobytes() + _TRAILER


def write_bars(conn, instrument_id: int, granularity: str, bars: pd.DataFrame) -> BarWriteResult:
    """Upsert validated bars (see :func:`validate_bars`) inside the caller's transaction."""
    if bars.empty:
        return BarWriteResult(0, 0, 0)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_bars "
            "(ts timestamptz, open float8, high float8, low float8, close float8, volume int8) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE stage_bars")
        cur.copy_expert("COPY stage_bars FROM STDIN WITH (FORMAT binary)", io.BytesIO(_to_copy_binary(bars)))
        cur.execute(
            """
            WITH upserted AS (
                INSERT INTO bars (instrument_id, granularity, ts, open, high, low, close, volume)
                SELECT %(iid)s, %(gran)s, ts, open, high, low, close, volume FROM stage_bars
                ON CONFLICT (instrument_id, granularity, ts) DO UPDATE
                   SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
                       close = EXCLUDED.close, volume = EXCLUDED.volume
                 WHERE (bars.open, bars.high, bars.low, bars.close, bars.volume)
                       IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
            """,
            {"iid": instrument_id, "gran": granularity},
        )
        inserted, updated = cur.fetchone()
    return BarWriteResult(inserted, updated, len(bars) - inserted - updated)


def read_bars(
    conn,
    symbol: str,
    granularity: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Bars of one instrument as a DataFrame indexed by UTC open time (``start <= ts < end``)."""
    instrument_id = get_instrument_id(conn, symbol)
    with conn.cursor() as cur:
        query = cur.mogrify(
            "SELECT ts, open, high, low, close, volume FROM bars "
            "WHERE instrument_id = %s AND granularity = %s AND ts >= %s AND ts < %s ORDER BY ts",
            (instrument_id, granularity, start or datetime(1900, 1, 1), end or datetime(2200, 1, 1)),
        ).decode()
        buf = io.BytesIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buf)
    raw = buf.getbuffer()
    count = (len(raw) - len(_HEADER) - len(_TRAILER)) // _ROW.itemsize
    rows = np.frombuffer(raw, dtype=_ROW, count=count, offset=len(_HEADER))
    index = pd.DatetimeIndex((rows["ts"].astype("int64") + PG_EPOCH_US).view("datetime64[us]"), name="ts").tz_localize("UTC")
    frame = pd.DataFrame(
        {name: rows[name].astype("float64") for name in ("open", "high", "low", "close")}, index=index
    )
    frame["volume"] = rows["volume"].astype("int64")
    return frame


def coverage(conn) -> list[dict]:
    """Per instrument and granularity: bar count and first/last bar (for `mbats data list`)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT i.symbol, b.granularity, count(*) AS bars, min(b.ts) AS first, max(b.ts) AS last,
                   i.vendor, i.is_synthetic
              FROM bars b JOIN instruments i ON i.id = b.instrument_id
             GROUP BY i.symbol, b.granularity, i.vendor, i.is_synthetic
             ORDER BY i.symbol, b.granularity
            """
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def last_bar_time(conn, instrument_id: int, granularity: str) -> datetime | None:
    with conn.cursor() as cur:
        cur.execute("SELECT max(ts) FROM bars WHERE instrument_id = %s AND granularity = %s", (instrument_id, granularity))
        return cur.fetchone()[0]
