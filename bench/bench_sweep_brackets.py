"""rsi_atr (stop-loss/take-profit brackets) on the compiled sweep core vs backtrader (issue 15.7).

100 rsi_atr configurations over a year of synthetic 1-minute bars (the bars of
``bench_sweep_core.py``): the numba core on 2 threads (warm: a first call loads or compiles the
kernels, then the best of 3) with its peak RSS; the numpy engine on 4 of the configurations (it runs
the same Python loops uncompiled); and backtrader on the best configuration by Sharpe, whose
trades must match the core's fingerprint (the sweep's agreement check). Before issue 15.7 every
configuration of an rsi_atr sweep was a backtrader run like the last one.

    python bench/bench_sweep_brackets.py        # prints one JSON line
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import replace

from research_common import year_of_minutes  # noqa: I001  (also sets MBATS_STRATEGIES_DIR)

GRID = {"rsi_period": [7, 10, 14, 21, 28], "stop_atr": [0.5, 1.0, 1.5, 2.0],
        "target_atr": [1.0, 1.5, 2.0, 3.0, 4.0]}                                      # 5 x 4 x 5 = 100
SPREAD_PIPS, COMMISSION = 0.8, 0.00002


def main() -> dict:
    from mbats.backtest.runner import BacktestSpec, simulate
    from mbats.config import reset_settings_cache
    from mbats.kernel.strategies import find_strategy
    from mbats.kernel.trades import trades_fingerprint
    from mbats.research.core import score_grid
    from mbats.research.grid import expand_grid
    from mbats.research.sweep import sort_key

    bars = {"GBP_USD": year_of_minutes()}
    base = BacktestSpec("rsi_atr", ["GBP_USD"], "M1", spread_pips=SPREAD_PIPS, commission=COMMISSION,
                        account_currency="USD")
    cls = find_strategy("rsi_atr")
    specs = [replace(base, params=params) for params in expand_grid(GRID)]
    out: dict = {"configs": len(specs), "bars": len(bars["GBP_USD"]), "load_before": os.getloadavg()}

    started = time.perf_counter()
    scores = score_grid(cls, specs, bars, threads=2)
    out["numba_first_call_s"] = time.perf_counter() - started
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        scores = score_grid(cls, specs, bars, threads=2)
        best = min(best, time.perf_counter() - started)
    out["numba_2_threads_s"] = best
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["total_trades"] = sum(scores.trades)

    os.environ["MBATS_COMPILED_CORE"] = "false"
    reset_settings_cache()
    started = time.perf_counter()
    fallback = score_grid(cls, specs[:4], bars)
    out["numpy_engine_s_per_config"] = (time.perf_counter() - started) / 4
    out["numpy_engine"] = fallback.engine
    out["numpy_equals_numba"] = fallback.fingerprints == scores.fingerprints[:4]

    top = min(range(len(specs)), key=lambda i: (sort_key(scores.metrics[i], "sharpe"), i))
    started = time.perf_counter()
    sim = simulate(specs[top], bars)
    out["backtrader_one_config_s"] = time.perf_counter() - started
    out["best"] = specs[top].params
    out["best_trades"] = scores.trades[top]
    out["backtrader_agrees"] = trades_fingerprint(sim.trades) == scores.fingerprints[top]
    out["load_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
