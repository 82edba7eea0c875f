"""Security-master I/O benchmark (issue 2): ingest and read a year of 1-minute bars.

Run on demand:  .cache/venv/bin/python bench/bench_secmaster.py [--bars 370000]

* Ingest: the project's path (validate + binary COPY + upsert) vs pandas ``to_sql`` (SQLAlchemy,
  chunks of 100k rows) into an identical table, same data, same run. Target: >= 10x.
* Read: ``read_bars`` (binary COPY straight into numpy) vs ``pandas.read_sql`` of the same rows.
  Target: the year loads in <= 0.5 s.
It uses the configured database (the embedded PostgreSQL by default) and cleans up after itself.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from mbats.db import connect, engine
from mbats.db.migrate import upgrade_all
from mbats.secmaster.instruments import Instrument
from mbats.secmaster.ingest import load_frames
from mbats.secmaster.bars import read_bars
from mbats.secmaster.samples import synthetic_minutes

SYMBOL = "EUR_NOK"  # a symbol the demo never uses, removed afterwards


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=370_000)
    args = parser.parse_args()
    upgrade_all()
    _, frame = synthetic_minutes(SYMBOL, 10.5, start="2023-01-01", end="2024-06-01")
    frame = frame.head(args.bars).reset_index(drop=True)
    n = len(frame)
    conn = connect("secmaster")
    instrument = Instrument.fx(SYMBOL, vendor="bench")
    try:
        def cleanup() -> None:
            with conn.cursor() as cur:
                cur.execute("DELETE FROM bars WHERE instrument_id = (SELECT id FROM instruments WHERE symbol = %s)",
                            (SYMBOL,))
                cur.execute("DROP TABLE IF EXISTS bench_bars_to_sql")
            conn.commit()

        cleanup()
        start = time.perf_counter()
        [result] = load_frames(conn, instrument, "M1", [("bench", frame)])
        ours = time.perf_counter() - start
        assert result.written.inserted == n
        start = time.perf_counter()
        [again] = load_frames(conn, instrument, "M1", [("bench", frame)])
        reload_s = time.perf_counter() - start
        assert again.written.unchanged == n

        with conn.cursor() as cur:  # same shape as bars, with its primary key, for a fair comparison
            cur.execute("CREATE TABLE bench_bars_to_sql (LIKE bars INCLUDING ALL)")
        conn.commit()
        sql_frame = frame.assign(instrument_id=1, granularity="M1")
        start = time.perf_counter()
        sql_frame.to_sql("bench_bars_to_sql", engine("secmaster"), if_exists="append", index=False, chunksize=100_000)
        to_sql = time.perf_counter() - start

        read_ours = best_of(3, lambda: read_bars(conn, SYMBOL, "M1"))
        query = ("SELECT ts, open, high, low, close, volume FROM bars WHERE instrument_id = "
                 f"(SELECT id FROM instruments WHERE symbol = '{SYMBOL}') AND granularity = 'M1' ORDER BY ts")
        read_sql = best_of(3, lambda: pd.read_sql(query, engine("secmaster")))
        assert len(read_bars(conn, SYMBOL, "M1")) == n
        cleanup()
    finally:
        conn.close()

    print(f"bars: {n:,}")
    print(f"ingest  mbats (validate+COPY+upsert): {ours:6.2f} s  {n / ours:10,.0f} bars/s")
    print(f"ingest  re-load same file (no change): {reload_s:6.2f} s  {n / reload_s:10,.0f} bars/s")
    print(f"ingest  pandas to_sql:                {to_sql:6.2f} s  {n / to_sql:10,.0f} bars/s")
    print(f"ingest  speed-up: {to_sql / ours:.1f}x (target >= 10x)")
    print(f"read    mbats read_bars (binary COPY): {read_ours:6.3f} s (target <= 0.5 s)")
    print(f"read    pandas read_sql:               {read_sql:6.3f} s  ({read_sql / read_ours:.1f}x slower)")


if __name__ == "__main__":
    main()
