"""100-configuration SMA sweep over a year of 1-minute bars: two-stage vs backtrader-only, and
the vectorised stage (the compiled scoring core since issue 19) on 2 workers vs 1.

The backtrader-only time is extrapolated from the measured backtrader re-runs of the top
configurations (mean seconds per run x 100 configurations / processes), not run in full.
No database: ``record=False, track=False`` (the recording cost is the same for both approaches).
"""

from __future__ import annotations

import sys
import time

from research_common import year_of_minutes  # noqa: I001  (also sets MBATS_STRATEGIES_DIR)

from mbats.backtest.runner import BacktestSpec
from mbats.research.sweep import SweepRequest, run_sweep

GRID = {"fast": list(range(5, 55, 5)), "slow": list(range(60, 260, 20))}  # 10 x 10 = 100 configurations


def main(top: int = 2) -> None:
    bars = {"GBP_USD": year_of_minutes()}
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.8, commission=0.00002)
    n_bars = len(bars["GBP_USD"])

    started = time.perf_counter()
    one = run_sweep(SweepRequest(base, GRID, top=0, rank_by="sharpe", workers=1, track=False, record=False), bars)
    t_one = time.perf_counter() - started

    started = time.perf_counter()
    two = run_sweep(SweepRequest(base, GRID, top=top, rank_by="sharpe", workers=2, track=False, record=False), bars)
    t_total = time.perf_counter() - started
    t_vec2 = two.vector_seconds

    assert [s.config_id for s in one.scores] == [s.config_id for s in two.scores]
    bt_each = sum(s.bt_seconds for s in two.rerun) / len(two.rerun)
    bt_only = bt_each * len(two.scores) / two.workers
    print(f"SMA crossover sweep, {len(two.scores)} configurations x {n_bars:,} 1-minute bars")
    print(f"  stage 1 vectorised ({one.engine}), 1 worker : {one.vector_seconds:.2f} s "
          f"({1000 * one.vector_seconds / len(one.scores):.1f} ms/config; first call in the process, "
          "includes loading the compiled code)")
    print(f"  stage 1 vectorised ({two.engine}), 2 workers: {t_vec2:.2f} s")
    print(f"  stage 2 backtrader re-runs of top {len(two.rerun)}: {two.backtrader_seconds:.1f} s on 2 processes "
          f"({bt_each:.1f} s per run, {n_bars / bt_each / 1e3:.1f}k bars/s)")
    print(f"  two-stage total (2 processes): {t_total:.1f} s")
    print(f"  backtrader-only, extrapolated: {bt_each:.1f} s x {len(two.scores)} / 2 processes = {bt_only:.0f} s")
    print(f"  speed-up to ranked + confirmed results: {bt_only / t_total:.0f}x; "
          f"to the vectorised ranking alone: {bt_only / t_vec2:.0f}x")
    for note in one.notes:
        print(f"  note: {note}")
    for s in two.rerun:
        print(f"  top {s.rank}: {s.params} trades {s.trades} vectorised sharpe {s.metrics['sharpe']:.4f} "
              f"backtrader {s.bt_metrics['sharpe']:.4f} identical trades: {s.trades_sha256 == s.bt_trades_sha256} "
              f"agrees: {s.agrees}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
