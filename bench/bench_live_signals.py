"""Per-bar cost of a signal strategy in a live session, from 1k to 400k bars of history.

Runs the class a live session trades (``mbats.live.signals.live_strategy``) bar by bar in
backtrader the way a session does (no preload, ``runonce=False``) over a random walk, and times
every ``next()``. Reported: the median per-bar time just after 1k, 10k, 100k and 400k bars of
history, for the bundled SmaCrossover (incremental mode) and a bounded-window strategy (window
mode), next to the cost the old code paid per bar at that history length (``signals()`` over the
whole history, timed at the same points). The incremental strategy runs every bar (its state
carries over); the window strategy, whose target depends on its last bars only, runs its signals
on the sampled bars and skips the others to keep the run short.

    .cache/venv/bin/python bench/bench_live_signals.py [--bars 400000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mbats.kernel.signals import SignalStrategy  # noqa: E402
from mbats.kernel.strategies import coerce_params, find_strategy  # noqa: E402
from mbats.live.signals import _window, live_strategy, signal_mode  # noqa: E402

CHECKPOINTS = (1_000, 10_000, 100_000, 400_000)
SAMPLE = 1_000  # bars timed after each checkpoint
HISTORY_REPEATS = 3  # whole-history signals() calls timed at each checkpoint


class WindowMomentum(SignalStrategy):
    """Long above the close ``period`` bars ago, short below: needs only ``period + 1`` bars."""

    params = dict(period=20)

    @classmethod
    def signals(cls, bars: pd.DataFrame, period: int = 20) -> pd.Series:
        return np.sign(bars["close"] - bars["close"].shift(period)).fillna(0).astype(np.int8)

    @classmethod
    def signal_lookback(cls, period: int = 20) -> int:
        return period + 1


def random_walk(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(1.1 * np.exp(np.cumsum(rng.normal(0, 2e-4, n))), 5)
    opens = np.concatenate(([1.1], close[:-1]))
    spread = np.abs(rng.normal(0, 1e-4, n))
    index = pd.date_range("2020-01-01", periods=n, freq="min")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, close) + spread,
                         "low": np.minimum(opens, close) - spread, "close": close,
                         "volume": rng.integers(1, 200, n).astype(float)}, index=index)


def measure(cls: type[bt.Strategy], params: dict, bars: pd.DataFrame, checkpoints: list[int]) -> dict:
    per_bar = np.zeros(len(bars))
    history_cost: dict[int, float] = {}
    mode = signal_mode(cls, params)
    sampled = np.zeros(len(bars) + 1, dtype=bool)
    for n in checkpoints:
        sampled[n - 1:n + SAMPLE] = True

    class Timed(live_strategy(cls)):
        def next(self):
            n = len(self.data)
            if mode == "window" and not sampled[n]:
                return  # a window target depends on the last bars only: skip the bars between samples
            t0 = time.perf_counter()
            super().next()
            per_bar[n - 1] = time.perf_counter() - t0
            if n in checkpoints:  # what the old code paid on this bar: signals() over all n bars
                t0 = time.perf_counter()
                for _ in range(HISTORY_REPEATS):
                    cls.signals(_window(self.data, n), **params)
                history_cost[n] = (time.perf_counter() - t0) / HISTORY_REPEATS

    cerebro = bt.Cerebro(stdstats=False, preload=False, runonce=False, exactbars=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=bars, timeframe=bt.TimeFrame.Minutes))
    cerebro.addstrategy(Timed, **params)
    started = time.perf_counter()
    cerebro.run()
    total = time.perf_counter() - started
    rows = []
    for n in checkpoints:
        sample = per_bar[n:n + SAMPLE]
        rows.append({"history_bars": n, "per_bar_us_median": round(float(np.median(sample)) * 1e6, 1),
                     "per_bar_us_p95": round(float(np.percentile(sample, 95)) * 1e6, 1),
                     "whole_history_us": round(history_cost[n] * 1e6, 1)})
    return {"strategy": cls.__name__, "mode": mode, "params": params, "bars": len(bars),
            "run_seconds": round(total, 1), "points": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=CHECKPOINTS[-1], help="largest history (default 400000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.bars < 1_000:
        print("error: --bars must be at least 1000", file=sys.stderr)
        return 2
    checkpoints = sorted({c for c in CHECKPOINTS if c < args.bars} | {args.bars})
    bars = random_walk(args.bars + SAMPLE)
    sma = find_strategy("sma_crossover")
    results = [measure(sma, coerce_params(sma, {}), bars, checkpoints),
               measure(WindowMomentum, {"period": 20}, bars, checkpoints)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"{r['strategy']} ({r['mode']} mode, {r['params']}): {r['bars']:,} bars in {r['run_seconds']} s")
        print(f"  {'history':>9}  {'per bar median':>15}  {'p95':>9}  {'old: signals() over history':>28}")
        for p in r["points"]:
            print(f"  {p['history_bars']:>9,}  {p['per_bar_us_median']:>12.1f} µs  {p['per_bar_us_p95']:>6.1f} µs"
                  f"  {p['whole_history_us']:>25.1f} µs")
        first, last = r["points"][0], r["points"][-1]
        print(f"  per-bar growth {first['history_bars']:,} → {last['history_bars']:,} bars: "
              f"×{last['per_bar_us_median'] / first['per_bar_us_median']:.2f} "
              f"(old: ×{last['whole_history_us'] / first['whole_history_us']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
