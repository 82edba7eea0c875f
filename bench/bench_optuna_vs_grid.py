"""Optuna search vs exhaustive grid (issue 15.2): trials to reach the grid's best Sharpe within 1 %.

Same bars and rules as ``bench_sweep_core.py`` (a year of synthetic GBP/USD 1-minute bars, 0.8 pip
spread, 0.002 % commission): the exhaustive grid is scored once by the compiled core to find the
best Sharpe; then ``mbats sweep --search optuna`` (:func:`mbats.research.search.run_search`, no
backtrader confirmation, nothing recorded) runs with several seeds, each with a budget of as many
trials as the grid has configurations, and the bench reports after how many trials the best Sharpe
found so far is within 1 % of the grid's best (and the distinct configurations scored by then).

    python bench/bench_optuna_vs_grid.py          # the 100-configuration grid
    python bench/bench_optuna_vs_grid.py fine     # also the 10,000-configuration grid (minutes)
    python bench/bench_optuna_vs_grid.py prune    # also with --prune: trials, full-history passes, seconds
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

from research_common import year_of_minutes  # noqa: I001  (also sets MBATS_STRATEGIES_DIR)

GRIDS = {"100": {"fast": list(range(5, 55, 5)), "slow": list(range(60, 260, 20))},
         "fine": {"fast": list(range(2, 102)), "slow": list(range(110, 310, 2))}}
SEEDS = [0, 1, 2, 3, 4]
SPREAD_PIPS, COMMISSION = 0.8, 0.00002


def main(which: list[str], modes: list[bool]) -> None:
    os.environ["MBATS_HOME"] = tempfile.mkdtemp(prefix="mbats-optuna-bench-")   # the studies' SQLite file
    from mbats.backtest.runner import BacktestSpec
    from mbats.kernel.strategies import find_strategy
    from mbats.research.core import score_grid
    from mbats.research.grid import expand_grid

    bars = {"GBP_USD": year_of_minutes()}
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=SPREAD_PIPS, commission=COMMISSION,
                        account_currency="USD")
    cls = find_strategy("sma_crossover")
    for name in which:
        grid = GRIDS[name]
        configs = expand_grid(grid)
        started = time.perf_counter()
        scores = score_grid(cls, [replace(base, params=p) for p in configs], bars, threads=2)
        grid_seconds = time.perf_counter() - started
        sharpes = [m["sharpe"] for m in scores.metrics if m["sharpe"] is not None]
        best = max(sharpes)
        target = best - 0.01 * abs(best)
        print(f"grid {name}: {len(configs):,} configurations scored in {grid_seconds:.2f} s; best Sharpe "
              f"{best:.4f} (within 1 %: >= {target:.4f}, {sum(s >= target for s in sharpes)} configurations)")
        for prune in modes:
            _seeds(name, grid, configs, target, base, bars, prune)


def _seeds(name: str, grid: dict, configs: list, target: float, base, bars: dict, prune: bool) -> None:
    import optuna

    from mbats.research.search import SearchRequest, run_search, storage_url
    from mbats.research.sweep import SweepRequest

    print(f"  {'with --prune' if prune else 'without pruning'}:")
    needed, distinct_needed, passes = [], [], []
    for seed in SEEDS:
        study = f"bench-{name}-{seed}-{'prune' if prune else 'plain'}"
        req = SearchRequest(SweepRequest(base, grid, top=0, rank_by="sharpe", workers=2, track=False,
                                         record=False), trials=len(configs), seed=seed, study=study, prune=prune)
        started = time.perf_counter()
        result = run_search(req, bars=bars)
        seconds = time.perf_counter() - started
        trials = optuna.load_study(study_name=study, storage=storage_url()).trials
        seen, reached, distinct = set(), None, None
        for t in trials:
            seen.add(t.user_attrs.get("config_id"))
            if reached is None and t.value is not None and t.value >= target:
                reached, distinct = t.number + 1, len(seen)
        full = len(result.scores)                       # configurations scored on the whole history
        early = sum(1 for t in trials if 0 in t.intermediate_values)   # half-history scores reported
        passes.append(full + 0.5 * early)
        needed.append(reached if reached is not None else float("inf"))
        distinct_needed.append(distinct if distinct is not None else float("inf"))
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
        print(f"    seed {seed}: within 1 % after {reached} trials ({distinct} distinct configurations); "
              f"{len(trials)} trials ({pruned} pruned), {len(seen)} distinct, {full} full-history scores, "
              f"{early} half-history scores, scoring {result.vector_seconds:.2f} s, {seconds:.1f} s in all")
    print(f"    median over {len(SEEDS)} seeds: {statistics.median(needed)} trials "
          f"({statistics.median(distinct_needed)} distinct configurations) of {len(configs):,}; "
          f"worst {max(needed)}; bar passes (full + half/2) median {statistics.median(passes)}")


if __name__ == "__main__":
    main(["100", *(["fine"] if "fine" in sys.argv[1:] else [])],
         [False, *([True] if "prune" in sys.argv[1:] else [])])
