"""Provenance per load: who produced a batch of bars, recorded next to the bars it wrote.

An instrument's own ``vendor`` says where it was first registered; a bar's ``load_id`` says
which load last wrote its values, so one instrument can hold bars from several sources (a
download, a file, the simulator) and each keeps its own label.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Provenance:
    kind: str            # file, sample, download
    vendor: str          # oanda, oanda-sim, backtesting.py sample data, a file's vendor …
    source: str | None = None
    is_synthetic: bool = False


def start_load(conn, instrument_id: int, granularity: str, provenance: Provenance) -> int:
    """A new load row in the caller's transaction; its id goes on every bar it writes."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO loads (kind, vendor, source, is_synthetic, instrument_id, granularity) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (provenance.kind, provenance.vendor, provenance.source, provenance.is_synthetic, instrument_id,
             granularity),
        )
        return cur.fetchone()[0]


def finish_load(conn, load_id: int, rows: int, first: pd.Timestamp | None, last: pd.Timestamp | None) -> None:
    """Add a batch's figures to its load (a download finishes page by page); a load that wrote
    nothing (a re-load of the same bars) is not kept."""
    with conn.cursor() as cur:
        if rows == 0:
            cur.execute("DELETE FROM loads WHERE id = %s AND rows = 0", (load_id,))
            return
        cur.execute(
            "UPDATE loads SET rows = rows + %s, first_ts = LEAST(first_ts, %s), last_ts = GREATEST(last_ts, %s) "
            "WHERE id = %s",
            (int(rows), None if first is None else pd.Timestamp(first).to_pydatetime(),
             None if last is None else pd.Timestamp(last).to_pydatetime(), load_id),
        )


def bar_sources(conn, symbol: str, granularity: str, start=None, end=None) -> list[dict]:
    """Where the bars of ``[start, end)`` came from: one entry per load (or legacy vendor) with its bar count."""
    from datetime import datetime

    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT b.load_id, coalesce(l.vendor, i.vendor), coalesce(l.is_synthetic, i.is_synthetic),
                   coalesce(l.source, i.source), l.kind, count(*)
              FROM bars b JOIN instruments i ON i.id = b.instrument_id LEFT JOIN loads l ON l.id = b.load_id
             WHERE i.symbol = %s AND b.granularity = %s AND b.ts >= %s AND b.ts < %s
             GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC
            """,
            (symbol, granularity, start or datetime(1900, 1, 1), end or datetime(2200, 1, 1)),
        )
        return [{"instrument": symbol, "load_id": load_id, "vendor": vendor, "is_synthetic": synthetic,
                 "source": source, "kind": kind, "bars": n}
                for load_id, vendor, synthetic, source, kind, n in cur.fetchall()]
