"""vectorbt on the sweep core's benchmark (run by bench_sweep_core.py in a bench-only venv).

vectorbt is not an MBATS dependency; it lives in its own venv so it never enters the lock:

    python3.11 -m venv .cache/venv-vectorbt && .cache/venv-vectorbt/bin/pip install vectorbt==1.2.0

    .cache/venv-vectorbt/bin/python bench/bench_sweep_vectorbt.py BARS.npz FASTS SLOWS HALF_SPREAD COMMISSION

Same rules as the core: signals at a bar's close, filled at the next bar's open, long/short
reversals, 10,000 units, commission on notional per fill and half the spread per unit (as a
per-bar slippage fraction, i.e. the fill price moves by exactly the half spread). Prints one JSON
line: seconds of the first call (includes numba compiling vectorbt) and of a warm call, peak RSS,
closed trades and total return per configuration (grid order: fast major, slow minor).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt


def sweep(bars: pd.DataFrame, fasts: list[int], slows: list[int], half_spread: float, commission: float):
    close, opens = bars["close"], bars["open"]
    fast_w = np.repeat(fasts, len(slows))
    slow_w = np.tile(slows, len(fasts))
    fast = vbt.MA.run(close, window=fast_w, short_name="fast")
    slow = vbt.MA.run(close, window=slow_w, short_name="slow")
    up = fast.ma_crossed_above(slow).vbt.fshift(1, fill_value=False)    # act at the next bar's open
    down = fast.ma_crossed_below(slow).vbt.fshift(1, fill_value=False)
    up.columns = down.columns = pd.RangeIndex(len(fast_w))
    pf = vbt.Portfolio.from_signals(close, entries=up, exits=down, short_entries=down, short_exits=up,
                                    price=opens, size=10_000, size_type="amount", fees=commission,
                                    slippage=half_spread / opens, init_cash=100_000.0, freq="1min")
    trades = pf.trades.closed.count().to_numpy()
    total_return = (pf.total_return() * 100.0).to_numpy()
    return trades, total_return


def main() -> None:
    path, fasts, slows, half_spread, commission = sys.argv[1:6]
    data = np.load(path)
    bars = pd.DataFrame({"open": data["open"], "close": data["close"]},
                        index=pd.DatetimeIndex(data["ts_ns"].astype("datetime64[ns]"), tz="UTC"))
    fasts = [int(x) for x in fasts.split(",")]
    slows = [int(x) for x in slows.split(",")]
    started = time.perf_counter()
    sweep(bars, fasts, slows, float(half_spread), float(commission))
    first = time.perf_counter() - started
    started = time.perf_counter()
    trades, total_return = sweep(bars, fasts, slows, float(half_spread), float(commission))
    warm = time.perf_counter() - started
    print(json.dumps({"variant": "vectorbt", "vectorbt": vbt.__version__, "first_call_seconds": first,
                      "seconds": warm, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "trades": trades.tolist(), "total_return_pct": total_return.tolist()}))


if __name__ == "__main__":
    main()
