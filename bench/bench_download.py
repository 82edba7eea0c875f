"""Benchmark: download a year of EUR_USD M1 bars from the OANDA simulator into the security master.

Run: ``.cache/venv/bin/python bench/bench_download.py`` (about a minute). It starts a throwaway
embedded PostgreSQL on a free port and a simulator on another, downloads through the real
oandapyV20 client (5,000-candle pages, rate cap, one commit per page) and prints wall time and
requests made (a year of M1 is ~374,000 bars, so ~75 pages).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", default="EUR_USD")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2025-01-01")
    parser.add_argument("--granularity", default="M1")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="mbats-bench-"))
    os.environ.update(MBATS_HOME=str(home), MBATS_EMBEDDED_PG_PORT=str(_free_port()))
    os.environ.pop("MBATS_DATABASE_URL", None)

    from mbats.config import reset_settings_cache
    from mbats.db import connect, embedded
    from mbats.db.migrate import upgrade_all
    from mbats.venues.oanda.client import make_client
    from mbats.marketdata.download import download_candles
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, start_simulator, synthetic_bars

    reset_settings_cache()
    upgrade_all()
    bars = {args.instrument: synthetic_bars(args.instrument, args.start, args.end, args.granularity)}
    server = start_simulator(bars, args.granularity, SimConfig())
    os.environ.update(MBATS_OANDA_ENVIRONMENT="sim", MBATS_OANDA_SIM_URL=server.url,
                      MBATS_OANDA_TOKEN=DEFAULT_TOKEN, MBATS_OANDA_ACCOUNT_ID=DEFAULT_ACCOUNT)
    reset_settings_cache()
    conn = connect("secmaster")
    try:
        client = make_client()
        started = time.perf_counter()
        result = download_candles(client, conn, args.instrument, args.granularity, start=args.start,
                                  end=args.end, progress=False)
        wall = time.perf_counter() - started
        rerun = download_candles(client, conn, args.instrument, args.granularity, end=args.end, progress=False)
    finally:
        conn.close()
        server.stop()
        embedded.stop(home / "pgdata")

    print(f"download {args.instrument} {args.granularity} {args.start} → {args.end} from the OANDA simulator")
    print(f"  bars stored        {result.bars_added:,} (source {len(bars[args.instrument]):,})")
    print(f"  requests           {result.requests} ({result.pages} pages of ≤ 5,000; retries {client.retries}; "
          f"429s from the simulator {server.sim.stats['429']})")
    print(f"  wall time          {wall:.1f} s  ({result.bars_added / wall:,.0f} bars/s, {wall / max(result.requests, 1) * 1000:.0f} ms/request)")
    print(f"  re-run             {rerun.bars_added} bars added, {rerun.requests} request(s), {rerun.seconds:.2f} s")


if __name__ == "__main__":
    main()
