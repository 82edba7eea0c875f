"""Multi-timeframe backtest overhead vs single timeframe (issue 15 item 1).

On the bundled sample bars (EUR/USD H1, 5,000 bars; synthetic GBP/USD M1, January 2024), in
memory, no database. Backtrader (``simulate``) and the vectorised engine (``vector_simulate``) run:

* ``single``: ``sma_crossover`` — one feed, SMA crossover;
* ``mtf``: ``sma_trend_filter`` — the same crossover filtered by the H4 trend: ``signals()``
  resamples the base bars to H4 and backtrader gets an extra ``@H4`` feed per instrument;
* ``mtf, no extra feed``: the same strategy with ``timeframes = ()`` (backtrader gets no H4
  feed), which separates the cost of the extra feed from the cost of the H4 signal work.

``single`` and ``mtf`` make different trades (the filter removes some), and backtrader's time
grows with orders, so the overhead of multi-timeframe itself is ``mtf`` vs ``mtf, no extra feed``
(the same trades) plus the resample (``resample_h4_s``).

Each figure is the smallest CPU time of this process (``time.process_time``: the engines are
single-threaded, and on a shared, loaded machine wall time mostly measures the other processes)
over ``REPEATS`` runs after one warm-up run.

    python bench/bench_multitimeframe.py
"""

from __future__ import annotations

import json
import time

import pandas as pd
from research_common import ROOT  # noqa: F401,I001  (sets MBATS_STRATEGIES_DIR)

REPEATS = 7


def sample_bars() -> dict[str, tuple[str, pd.DataFrame]]:
    from mbats.secmaster.samples import SYNTHETIC_END, SYNTHETIC_START, eurusd_hourly, synthetic_minutes

    _, frame = eurusd_hourly()
    frame = frame.rename(columns={c: c.lower() for c in frame.columns})
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop(frame.columns[0])), name="ts").tz_localize("UTC")
    eurusd = frame.set_index(index)[["open", "high", "low", "close", "volume"]]
    _, minutes = synthetic_minutes("GBP_USD", 1.27, SYNTHETIC_START, SYNTHETIC_END)
    gbpusd = minutes.set_index(pd.DatetimeIndex(minutes.pop("ts"), name="ts"))
    return {"EUR_USD": ("H1", eurusd), "GBP_USD": ("M1", gbpusd)}


def timed(fn) -> float:
    fn()  # warm-up: imports, first-call caches
    times = []
    for _ in range(REPEATS):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)  # the least-disturbed run: noise on a shared machine only ever adds time


def main() -> None:
    from mbats.backtest.runner import BacktestSpec, simulate
    from mbats.kernel.strategies import find_strategy
    from mbats.kernel.timeframes import resample
    from mbats.research.vectorised import vector_simulate

    mtf = find_strategy("sma_trend_filter")
    no_feed = type("SmaTrendFilterNoFeed", (mtf,), {"timeframes": ()})
    rows = []
    for symbol, (granularity, frame) in sample_bars().items():
        bars = {symbol: frame}
        spec = lambda name: BacktestSpec(name, [symbol], granularity, spread_pips=1.0, financing=False)  # noqa: E731
        row = {"instrument": symbol, "granularity": granularity, "bars": len(frame),
               "resample_h4_s": timed(lambda: resample(frame, "H4")),
               "bt_single_s": timed(lambda: simulate(spec("sma_crossover"), bars)),
               "bt_mtf_s": timed(lambda: simulate(spec("sma_trend_filter"), bars)),
               "bt_mtf_no_feed_s": timed(lambda: simulate(spec("sma_trend_filter"), bars, no_feed)),
               "vec_single_s": timed(lambda: vector_simulate(spec("sma_crossover"), bars)),
               "vec_mtf_s": timed(lambda: vector_simulate(spec("sma_trend_filter"), bars))}
        row["trades_single"] = len(simulate(spec("sma_crossover"), bars).trades)
        row["trades_mtf"] = len(simulate(spec("sma_trend_filter"), bars).trades)
        row["bt_overhead_pct"] = 100.0 * (row["bt_mtf_s"] / row["bt_single_s"] - 1.0)
        row["bt_feed_share_pct"] = 100.0 * (row["bt_mtf_s"] - row["bt_mtf_no_feed_s"]) / row["bt_mtf_s"]
        row["vec_overhead_pct"] = 100.0 * (row["vec_mtf_s"] / row["vec_single_s"] - 1.0)
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
