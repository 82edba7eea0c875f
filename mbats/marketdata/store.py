"""Bid/ask OHLC next to the stored mid bars (migration sm0002 adds the nullable columns).

Mid bars go through :func:`mbats.secmaster.write_bars`; this only fills the bid_* / ask_*
columns of rows that exist, in the caller's transaction.
"""

from __future__ import annotations

import io

import pandas as pd

FIELDS = ("open", "high", "low", "close")


def write_sides(conn, instrument_id: int, granularity: str, sides: dict[str, pd.DataFrame]) -> int:
    """Set bid/ask OHLC on existing bars (same ts); return the number of rows touched."""
    frames = [df.set_index("ts")[list(FIELDS)].add_prefix(f"{side}_") for side, df in sides.items() if not df.empty]
    if not frames:
        return 0
    joined = pd.concat(frames, axis=1).reset_index()
    columns = [c for c in joined.columns if c != "ts"]
    buf = io.StringIO()
    out = joined.copy()
    out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out.to_csv(buf, index=False, header=False, float_format="%.12g")
    buf.seek(0)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_sides (ts timestamptz, "
            + ", ".join(f"{c} float8" for c in ("bid_open", "bid_high", "bid_low", "bid_close",
                                               "ask_open", "ask_high", "ask_low", "ask_close"))
            + ") ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE stage_sides")
        cur.copy_expert(f"COPY stage_sides (ts, {', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buf)
        assignments = ", ".join(f"{c} = s.{c}" for c in columns)
        cur.execute(
            f"UPDATE bars b SET {assignments} FROM stage_sides s "
            "WHERE b.instrument_id = %s AND b.granularity = %s AND b.ts = s.ts",
            (instrument_id, granularity),
        )
        return cur.rowcount
