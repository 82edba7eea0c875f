"""What the MLflow artifacts of a sweep cost (issue 18.3): each backtrader re-run (child run) gets
``summary/metrics.json`` + ``summary/equity.csv`` (≤ 500 points), the parent run ``sweep_scores.csv``
and, for a two-parameter grid, an SVG heatmap.

Runs a 20-configuration SMA sweep (top 5 re-run, recorded and tracked) on the sample data, in a
throw-away MBATS_HOME with its own embedded PostgreSQL (MLflow tracks into it, artifacts on local
disk), and times the artifact writers inside it against the whole sweep.

    .cache/venv/bin/python bench/bench_sweep_artifacts.py
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    home = tempfile.mkdtemp(prefix="mbats-bench-artifacts-")
    os.environ.update(MBATS_HOME=home, MBATS_EMBEDDED_PG_PORT=str(_free_port()),
                      MBATS_STRATEGIES_DIR=str(ROOT / "strategies"))
    os.environ.pop("MBATS_DATABASE_URL", None)
    os.environ.pop("MBATS_MLFLOW_TRACKING_URI", None)

    from mbats import tracking
    from mbats.backtest.runner import BacktestSpec
    from mbats.db import connect
    from mbats.db.migrate import upgrade_all
    from mbats.research import sweep_artifacts
    from mbats.research.sweep import SweepRequest, run_sweep
    from mbats.secmaster.samples import load_samples

    upgrade_all()
    conn = connect("secmaster")
    try:
        load_samples(conn)
    finally:
        conn.close()

    spent = {"child": [], "parent": []}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key].append(time.perf_counter() - started)
        return wrapper

    tracking.log_light_artifacts = timed(tracking.log_light_artifacts, "child")
    sweep_artifacts.write = timed(sweep_artifacts.write, "parent")
    base = BacktestSpec("sma_crossover", ["EUR_USD"], "H1")
    grid = {"fast": [5, 10, 15, 20, 25], "slow": [40, 60, 80, 100]}
    run_sweep(SweepRequest(base, grid, top=1, workers=1))  # warm-up: MLflow tables, imports
    spent = {"child": [], "parent": []}
    started = time.perf_counter()
    result = run_sweep(SweepRequest(base, grid, top=5, workers=1))
    total = time.perf_counter() - started
    child = sum(spent["child"])
    # the parent's upload is part of its log_artifacts call, timed with the writer's output size below
    parent_write = sum(spent["parent"])
    print(f"sweep of {len(result.scores)} configurations, top {len(result.rerun)} re-run and tracked: {total:.2f} s")
    print(f"  child artifacts (metrics.json + equity.csv, written and logged): {child:.3f} s for "
          f"{len(spent['child'])} runs = {1000 * child / max(1, len(spent['child'])):.0f} ms each")
    print(f"  parent artifacts written (scores csv + heatmap svg): {parent_write:.3f} s")
    print(f"  artifacts' share of the sweep: {100 * (child + parent_write) / total:.1f} %")


if __name__ == "__main__":
    main()
