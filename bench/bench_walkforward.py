"""Walk-forward wall time on 2 processes vs 1 (issue 15), and Monte Carlo of trades.

A year of synthetic 1-minute GBP/USD bars (``research_common``), SMA crossover, a 10 x 10 grid,
rolling 60-day in-sample / 30-day out-of-sample windows: each window's grid is scored by the
sweep's compiled core, the windows run on 1 or 2 processes (each variant in its own process).
Both variants must choose the same parameters and end at the same stitched equity.
Then Monte Carlo: 1,000 paths of the out-of-sample trades (shuffle and bootstrap) and of the
daily returns (5-day blocks).

    python bench/bench_walkforward.py          # both variants + Monte Carlo
    python bench/bench_walkforward.py 2        # one variant (prints one JSON line)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from research_common import year_of_minutes  # noqa: I001  (also sets MBATS_STRATEGIES_DIR)

GRID = {"fast": list(range(5, 55, 5)), "slow": list(range(60, 260, 20))}   # 10 x 10 = 100
TRAIN, TEST = "60D", "30D"


def variant(workers: int) -> dict:
    from mbats.backtest.runner import BacktestSpec
    from mbats.research.walkforward import walk_forward_many

    bars = {"GBP_USD": year_of_minutes()}
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.8)
    started = time.perf_counter()
    result = walk_forward_many(base, bars, GRID, TRAIN, TEST, workers=workers)["GBP_USD"]
    seconds = time.perf_counter() - started
    return {"workers": workers, "seconds": round(seconds, 2), "windows": len(result.windows),
            "bars": len(bars["GBP_USD"]), "final": result.equity.iloc[-1],
            "params": [[c["params"]["fast"], c["params"]["slow"]] for c in result.chosen],
            "trades": [float(x) for x in result.trades["pnl_net"].dropna()],
            "equity": {str(k): float(v) for k, v in result.equity.iloc[::60].items()}}


def montecarlo(trades: list[float], equity: dict[str, float]) -> list[dict]:
    import pandas as pd

    from mbats.research.montecarlo import simulate_run, simulate_trades

    out = []
    for method in ("shuffle", "bootstrap"):
        r = simulate_trades(trades, 100_000.0, paths=1000, seed=1, method=method)
        out.append({"method": method, "samples": r.samples, "seconds": round(r.seconds, 3), **r.summary()})
    series = pd.Series(equity)
    series.index = pd.to_datetime(series.index, utc=True)
    r = simulate_run(pd.DataFrame({"pnl_net": [], "is_open": []}), series, 100_000.0, 1000, 1, "blocks", 5)
    out.append({"method": "blocks 5d", "samples": r.samples, "seconds": round(r.seconds, 3), **r.summary()})
    return out


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(variant(int(sys.argv[1]))))
        return
    runs = {}
    for workers in (1, 2):
        proc = subprocess.run([sys.executable, str(Path(__file__)), str(workers)], capture_output=True, text=True,
                              check=True, timeout=3600)
        runs[workers] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"walk-forward on {workers} process(es): {runs[workers]['seconds']} s "
              f"({runs[workers]['windows']} windows x {len(GRID['fast']) * len(GRID['slow'])} configurations, "
              f"{runs[workers]['bars']:,} bars)")
    same = runs[1]["params"] == runs[2]["params"] and runs[1]["final"] == runs[2]["final"]
    print(f"speed-up {runs[1]['seconds'] / runs[2]['seconds']:.2f}x; same choices and final equity: {same}")
    for row in montecarlo(runs[1]["trades"], runs[1]["equity"]):
        print(f"Monte Carlo {row['method']}: 1,000 paths of {row['samples']} samples in {row['seconds']} s; "
              f"final equity p5/p50/p95 {row['final_equity_p5']:,.0f}/{row['final_equity_p50']:,.0f}/"
              f"{row['final_equity_p95']:,.0f}; max DD % p5/p50/p95 {row['max_drawdown_pct_p5']:.2f}/"
              f"{row['max_drawdown_pct_p50']:.2f}/{row['max_drawdown_pct_p95']:.2f}")


if __name__ == "__main__":
    main()
