"""Bulk bar I/O through PostgreSQL's binary COPY, straight to and from numpy columns.

Writes stage the bars in a temporary table with one binary COPY, then upsert them into ``bars``
in the caller's transaction: re-loading the same data changes nothing, corrected bars are
updated. Reads use ``COPY … TO STDOUT (FORMAT binary)``: every row has the same fixed width, so
the whole result is parsed by one ``numpy.frombuffer`` call, never row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg2.errors

from mbats.db.copy import copy_in, copy_out, utc_index
from mbats.secmaster.instruments import get_instrument_id

BAR_FIELDS = (("ts", "timestamptz"), ("open", "float8"), ("high", "float8"), ("low", "float8"),
              ("close", "float8"), ("volume", "int8"))
KEYED_BAR_FIELDS = (("instrument_id", "int4"), ("granularity", "text"), *BAR_FIELDS)


@dataclass(frozen=True)
class BarWriteResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def write_bars(conn, instrument_id: int, granularity: str, bars: pd.DataFrame,
               load_id: int | None = None) -> BarWriteResult:
    """Upsert validated bars (see :func:`validate_bars`) inside the caller's transaction.

    ``load_id`` (see :mod:`mbats.secmaster.loads`) is recorded on every bar inserted or changed;
    a bar the load leaves unchanged keeps the load that wrote it first.
    """
    if bars.empty:
        return BarWriteResult(0, 0, 0)
    columns = {name: bars[name] for name, _ in BAR_FIELDS}
    columns["volume"] = bars["volume"].to_numpy(dtype="int64")
    with conn.cursor() as cur:
        if _copy_into_empty_range(cur, instrument_id, granularity, columns, len(bars), load_id):
            return BarWriteResult(len(bars), 0, 0)
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_bars "
            "(ts timestamptz, open float8, high float8, low float8, close float8, volume int8) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE stage_bars")
        copy_in(cur, "stage_bars", BAR_FIELDS, columns, len(bars))
        cur.execute(
            """
            WITH upserted AS (
                INSERT INTO bars (instrument_id, granularity, ts, open, high, low, close, volume, load_id)
                SELECT %(iid)s, %(gran)s, ts, open, high, low, close, volume, %(load)s FROM stage_bars
                ON CONFLICT (instrument_id, granularity, ts) DO UPDATE
                   SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
                       close = EXCLUDED.close, volume = EXCLUDED.volume,
                       load_id = coalesce(EXCLUDED.load_id, bars.load_id)
                 WHERE (bars.open, bars.high, bars.low, bars.close, bars.volume)
                       IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
            """,
            {"iid": instrument_id, "gran": granularity, "load": load_id},
        )
        inserted, updated = cur.fetchone()
    return BarWriteResult(inserted, updated, len(bars) - inserted - updated)


def _copy_into_empty_range(cur, instrument_id: int, granularity: str, columns: dict, nrows: int,
                           load_id: int | None = None) -> bool:
    """Fast path for new data: COPY straight into ``bars`` when no stored bar falls in its range.

    Skips the staging table and the conflict checks (about 2x faster on a fresh year of bars). A
    concurrent writer that fills the range first makes the COPY hit the primary key; the savepoint
    then undoes it and the caller falls back to the upsert.
    """
    first, last = columns["ts"].iloc[0], columns["ts"].iloc[-1]
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM bars WHERE instrument_id = %s AND granularity = %s AND ts BETWEEN %s AND %s)",
        (instrument_id, granularity, first.to_pydatetime(), last.to_pydatetime()),
    )
    if cur.fetchone()[0]:
        return False
    cur.execute("SAVEPOINT bars_direct_copy")
    try:
        fields, keyed = KEYED_BAR_FIELDS, {"instrument_id": np.full(nrows, instrument_id, dtype="int32"),
                                           "granularity": granularity, **columns}
        if load_id is not None:
            fields, keyed = (*fields, ("load_id", "int4")), keyed | {"load_id": np.full(nrows, load_id, dtype="int32")}
        copy_in(cur, "bars", fields, keyed, nrows)
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT bars_direct_copy")
        return False
    cur.execute("RELEASE SAVEPOINT bars_direct_copy")
    return True


SIDES = ("bid", "ask")
PRICE_FIELDS = ("open", "high", "low", "close")


def write_sides(conn, instrument_id: int, granularity: str, sides: dict[str, pd.DataFrame]) -> int:
    """Set the bid_* / ask_* OHLC of bars already written (same ts), in the caller's transaction.

    ``sides`` maps "bid" and/or "ask" to frames with ts, open, high, low, close (an OANDA candle
    page). Mid bars go through :func:`write_bars` first; a side row without its bar is ignored.
    Returns the number of bars updated.
    """
    updated: set = set()
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage_sides (ts timestamptz, "
                    + ", ".join(f"{side}_{f} float8" for side in SIDES for f in PRICE_FIELDS)
                    + ") ON COMMIT DELETE ROWS")
        # One side at a time: each candle side is complete, so no NaN stands in for a missing price.
        for side, frame in sides.items():
            if side not in SIDES or frame.empty:
                continue
            names = [f"{side}_{f}" for f in PRICE_FIELDS]
            fields = (("ts", "timestamptz"), *((name, "float8") for name in names))
            columns = {"ts": frame["ts"], **{f"{side}_{f}": frame[f] for f in PRICE_FIELDS}}
            cur.execute("TRUNCATE stage_sides")
            copy_in(cur, "stage_sides", fields, columns, len(frame))
            cur.execute(f"UPDATE bars b SET {', '.join(f'{n} = s.{n}' for n in names)} FROM stage_sides s "
                        "WHERE b.instrument_id = %s AND b.granularity = %s AND b.ts = s.ts RETURNING b.ts",
                        (instrument_id, granularity))
            updated.update(row[0] for row in cur.fetchall())
    return len(updated)


def read_bars(
    conn,
    symbol: str,
    granularity: str,
    start: datetime | None = None,
    end: datetime | None = None,
    sides: bool = False,
) -> pd.DataFrame:
    """Bars of one instrument as a DataFrame indexed by UTC open time (``start <= ts < end``).

    ``sides``: also the bid_* / ask_* columns when any bar of the range has them stored (NaN where
    a bar has none), so a backtest fills at the bid and ask wherever they were downloaded.
    """
    instrument_id = get_instrument_id(conn, symbol)
    window = (instrument_id, granularity, start or datetime(1900, 1, 1), end or datetime(2200, 1, 1))
    where = "WHERE instrument_id = %s AND granularity = %s AND ts >= %s AND ts < %s"
    with conn.cursor() as cur:
        query = cur.mogrify(f"SELECT ts, open, high, low, close, volume FROM bars {where} ORDER BY ts", window).decode()
        rows = copy_out(cur, query, BAR_FIELDS)
        frame = pd.DataFrame({name: rows[name] for name in ("open", "high", "low", "close", "volume")},
                             index=utc_index(rows["ts"]))
        if sides:
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM bars {where} AND bid_open IS NOT NULL)", window)
            if cur.fetchone()[0]:
                names = [f"{side}_{field}" for side in ("bid", "ask") for field in ("open", "high", "low", "close")]
                # binary COPY rows are fixed-width: a missing side travels as NaN
                columns = ", ".join(f"coalesce({n}, 'NaN'::float8)" for n in names)
                query = cur.mogrify(f"SELECT {columns} FROM bars {where} ORDER BY ts", window).decode()
                side_rows = copy_out(cur, query, tuple((n, "float8") for n in names))
                for name in names:
                    frame[name] = side_rows[name]
    return frame


def coverage(conn) -> list[dict]:
    """Per instrument and granularity: bar count, first/last bar and where the bars came from.

    ``vendor`` lists every source of the bars (per load; bars from before per-load provenance
    count as the instrument's vendor), ``is_synthetic`` is true if any bar is synthetic and
    ``synthetic`` says yes / no / mixed.
    """
    with conn.cursor() as cur:
        cur.execute(
            """
            WITH per_source AS (
                SELECT b.instrument_id, b.granularity, coalesce(l.vendor, i.vendor) AS vendor,
                       coalesce(l.is_synthetic, i.is_synthetic) AS is_synthetic,
                       count(*) AS bars, min(b.ts) AS first, max(b.ts) AS last
                  FROM bars b JOIN instruments i ON i.id = b.instrument_id LEFT JOIN loads l ON l.id = b.load_id
                 GROUP BY 1, 2, 3, 4
            )
            SELECT i.symbol, p.granularity, sum(p.bars)::bigint AS bars, min(p.first) AS first, max(p.last) AS last,
                   string_agg(p.vendor || CASE WHEN p.is_synthetic THEN ' (synthetic)' ELSE '' END, ', '
                              ORDER BY p.bars DESC, p.vendor) AS vendor,
                   bool_or(p.is_synthetic) AS is_synthetic,
                   CASE WHEN bool_and(p.is_synthetic) THEN 'yes' WHEN bool_or(p.is_synthetic) THEN 'mixed'
                        ELSE 'no' END AS synthetic,
                   count(*) AS sources
              FROM per_source p JOIN instruments i ON i.id = p.instrument_id
             GROUP BY i.symbol, p.granularity
             ORDER BY i.symbol, p.granularity
            """
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def bar_times(conn, instrument_id: int, granularity: str, start: datetime, end: datetime) -> pd.DatetimeIndex:
    """Open times of the stored bars in ``[start, end)``, ascending (UTC)."""
    with conn.cursor() as cur:
        cur.execute("SELECT ts FROM bars WHERE instrument_id = %s AND granularity = %s AND ts >= %s AND ts < %s "
                    "ORDER BY ts", (instrument_id, granularity, start, end))
        return pd.DatetimeIndex(pd.to_datetime([r[0] for r in cur.fetchall()], utc=True), name="ts")


def last_bar_time(conn, instrument_id: int, granularity: str, start: datetime | None = None,
                  end: datetime | None = None) -> datetime | None:
    """Open time of the last stored bar, optionally only among bars in ``[start, end)``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT max(ts) FROM bars WHERE instrument_id = %s AND granularity = %s AND ts >= %s AND ts < %s",
            (instrument_id, granularity, start or datetime(1900, 1, 1), end or datetime(2200, 1, 1)),
        )
        return cur.fetchone()[0]
