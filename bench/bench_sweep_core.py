"""The sweep scoring core (issue 19): 100 SMA-crossover configurations x a year of 1-minute bars.

Side by side on the same bars and grid, each in its own process (so each peak RSS is its own):
the previous stage 1 (``vector_simulate`` per configuration on 1 and 2 processes), the numpy
engine of the core, and the numba core on 1 and 2 threads (warm: compiled code loaded from the
cache by a first call, then the best of 3); then a fine 10,000-configuration grid on the numba
core; and vectorbt on the same grid when its bench-only venv exists (``bench_sweep_vectorbt.py``
says how to make it; it is never part of MBATS's lock). Every MBATS variant must give the same
trade counts and the same top-5 ranking by Sharpe; vectorbt's trade counts and total returns are
compared with them and the differences counted.

    python bench/bench_sweep_core.py            # all variants
    python bench/bench_sweep_core.py numba-2    # one variant (prints one JSON line)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from research_common import year_of_minutes  # noqa: I001  (also sets MBATS_STRATEGIES_DIR)

GRID = {"fast": list(range(5, 55, 5)), "slow": list(range(60, 260, 20))}          # 10 x 10 = 100
FINE_GRID = {"fast": list(range(2, 102)), "slow": list(range(110, 310, 2))}        # 100 x 100 = 10,000
VARIANTS = ["old-1", "old-2", "numpy-1", "numba-1", "numba-2", "fine-numba-2", "vectorbt"]
SPREAD_PIPS, COMMISSION = 0.8, 0.00002
VECTORBT_PYTHON = Path(__file__).resolve().parent.parent / ".cache" / "venv-vectorbt" / "bin" / "python"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def run_variant(name: str) -> dict:
    os.environ["MBATS_COMPILED_CORE"] = "false" if name.startswith("numpy") else "true"
    from mbats.backtest.runner import BacktestSpec
    from mbats.kernel.strategies import find_strategy
    from mbats.research.core import score_grid
    from mbats.research.grid import expand_grid
    from mbats.research.sweep import _map, _vector_task, make_pool, sort_key

    bars = {"GBP_USD": year_of_minutes()}
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=SPREAD_PIPS, commission=COMMISSION,
                        account_currency="USD")
    cls = find_strategy("sma_crossover")
    grid = FINE_GRID if name.startswith("fine") else GRID
    specs = [replace(base, params=params) for params in expand_grid(grid)]
    workers = int(name.rsplit("-", 1)[1])
    if not name.startswith(("old", "numpy")):
        from mbats.research.core import _kernels

        _kernels()                   # numba itself in the baseline: the rows below are the scoring's own
    baseline = _rss_mb()
    first = None
    if name.startswith("old"):
        started = time.perf_counter()
        pool = make_pool(workers, bars)
        rows = sorted(_map(pool, _vector_task, [(s, i) for i, s in enumerate(specs)], "vectorised", None),
                      key=lambda r: r["config_id"])
        pool.shutdown(wait=True)
        seconds = time.perf_counter() - started
        metrics, trades = [r["metrics"] for r in rows], [r["trades"] for r in rows]
    else:
        started = time.perf_counter()
        scores = score_grid(cls, specs, bars, threads=workers)   # numba: loads (or compiles) the kernels
        first = time.perf_counter() - started
        runs = 1 if name.startswith("fine") else 3
        seconds = first
        for _ in range(runs):
            started = time.perf_counter()
            scores = score_grid(cls, specs, bars, threads=workers)
            seconds = min(seconds, time.perf_counter() - started)
        metrics, trades = scores.metrics, scores.trades
    ranked = sorted(range(len(specs)), key=lambda i: (sort_key(metrics[i], "sharpe"), i))
    return {"variant": name, "configs": len(specs), "bars": len(bars["GBP_USD"]), "seconds": seconds,
            "first_call_seconds": first, "baseline_rss_mb": baseline, "peak_rss_mb": _peak_mb(),
            "children_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN), "top5": ranked[:5],
            "top5_sharpe": [metrics[i]["sharpe"] for i in ranked[:5]], "trades": trades[:100],
            "total_trades": sum(trades),
            "total_return_pct": [m["total_return_pct"] for m in metrics][:100]}


def run_vectorbt() -> dict:
    """The vectorbt variant in its own venv, on the same bars (handed over as an .npz file)."""
    import tempfile

    import numpy as np

    from mbats.secmaster.instruments import pip_size

    if not VECTORBT_PYTHON.exists():
        return {"skipped": f"no bench-only vectorbt venv at {VECTORBT_PYTHON.parent.parent} "
                           "(see bench/bench_sweep_vectorbt.py)"}
    bars = year_of_minutes()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bars.npz"
        np.savez(path, open=bars["open"].to_numpy(), close=bars["close"].to_numpy(),
                 ts_ns=bars.index.as_unit("ns").asi8)
        out = subprocess.run([str(VECTORBT_PYTHON), str(Path(__file__).with_name("bench_sweep_vectorbt.py")),
                              str(path), ",".join(map(str, GRID["fast"])), ",".join(map(str, GRID["slow"])),
                              repr(SPREAD_PIPS / 2 * pip_size("GBP_USD")), repr(COMMISSION)],
                             capture_output=True, text=True)
    if out.returncode:
        return {"skipped": f"vectorbt failed: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    results = {}
    for name in VARIANTS:
        if name == "vectorbt":
            results[name] = run_vectorbt()
            continue
        out = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{name} failed:\n{out.stderr}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    ref = results["old-1"]
    print(f"SMA crossover, {ref['configs']} configurations x {ref['bars']:,} 1-minute bars "
          f"(same grid, bars and rules in every row)")
    print(f"  {'variant':<14}{'seconds':>9}{'speed-up':>10}{'peak RSS MB':>13}{'(+children)':>13}  first call")
    for name in VARIANTS[:-2]:
        r = results[name]
        first = f"{r['first_call_seconds']:.2f} s" if r["first_call_seconds"] is not None else ""
        print(f"  {name:<14}{r['seconds']:>9.3f}{ref['seconds'] / r['seconds']:>9.0f}x{r['peak_rss_mb']:>13.0f}"
              f"{r['children_peak_rss_mb']:>13.0f}  {first}")
        assert r["trades"] == ref["trades"], f"{name}: trade counts differ from the per-configuration path"
        assert r["top5"] == ref["top5"], f"{name}: top-5 ranking differs"
    print(f"  all variants: identical trade counts on all {ref['configs']} configurations "
          f"({ref['total_trades']:,} trades), same top 5 by Sharpe {ref['top5']}")
    fine = results["fine-numba-2"]
    print(f"  fine grid, {fine['configs']:,} configurations on 2 threads: {fine['seconds']:.1f} s "
          f"({fine['configs'] / fine['seconds']:.0f} configurations/s, {fine['total_trades']:,} trades), "
          f"peak RSS {fine['peak_rss_mb']:.0f} MB (bars and imports {fine['baseline_rss_mb']:.0f} MB)")
    numba = results["numba-2"]
    print(f"  memory, numba-2: {numba['baseline_rss_mb']:.0f} MB before scoring (imports, bars, numba), "
          f"peak {numba['peak_rss_mb']:.0f} MB")
    vbt = results["vectorbt"]
    if "skipped" in vbt:
        print(f"  vectorbt: skipped: {vbt['skipped']}")
        return
    same_trades = sum(a == b for a, b in zip(vbt["trades"], ref["trades"]))
    close = sum(abs(a - b) <= 0.01 for a, b in zip(vbt["total_return_pct"], ref["total_return_pct"]))
    print(f"  vectorbt {vbt['vectorbt']}: {vbt['seconds']:.2f} s warm ({numba['seconds'] / vbt['seconds']:.3f}x "
          f"the numba core's speed), first call {vbt['first_call_seconds']:.1f} s, peak RSS "
          f"{vbt['peak_rss_mb']:.0f} MB; same trade count on {same_trades}/{len(ref['trades'])} configurations, "
          f"total return within 0.01 pp on {close}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run_variant(sys.argv[1])))
    else:
        main()
