"""Scoring a grid stays light: the scoring path loads numpy, pandas and the kernels, nothing heavier.

The 100-configuration sweep fits its 350 MB budget only because scoring does not import
backtrader, scipy/empyrical, scikit-learn, MLflow or pydantic (~200 MB between them); a stray
top-level import in the core or in what it imports would bring them back unnoticed.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

from mbats.backtest.runner import BacktestSpec
from mbats.config import PROJECT_ROOT
from mbats.kernel.strategies import find_strategy
from mbats.research import core

# numba itself imports the scipy package (a few MB); empyrical loads scipy.stats and scipy.optimize
HEAVY = ["backtrader", "scipy.stats", "scipy.optimize", "empyrical", "sklearn", "mlflow", "pydantic", "psycopg2",
         "optuna"]

SCRIPT = """
import json, sys
import pickle
bars_path, heavy = sys.argv[1], sys.argv[3].split(',')
plan = pickle.loads(bytes.fromhex(sys.argv[2]))
import numpy as np, pandas as pd
from mbats.research.core import score_plan

index = pd.date_range("2024-01-02", periods=6000, freq="min", tz="UTC")
close = (1.27 * np.exp(np.cumsum(np.random.default_rng(7).normal(0, 2e-4, len(index))))).round(5)
frame = pd.DataFrame({"open": np.roll(close, 1), "high": close + 1e-4, "low": close - 1e-4, "close": close},
                     index=index)
frame.iloc[0, 0] = close[0]
scores = score_plan(plan, {"GBP_USD": frame}, threads=2)
frame.to_pickle(bars_path)
print(json.dumps({"loaded": sorted(m for m in heavy if m in sys.modules), "trades": scores.trades,
                  "fingerprints": scores.fingerprints, "engine": scores.engine}))
"""


def test_scoring_a_planned_grid_imports_no_backtrader_scipy_sklearn_or_mlflow(tmp_path):
    spec = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.8, commission=0.00002,
                        account_currency="USD")
    specs = [BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.8, commission=0.00002,
                          account_currency="USD", params={"fast": f, "slow": s})
             for f in (5, 10) for s in (30, 60)]
    plan = core.plan_grid(find_strategy("sma_crossover"), specs)
    assert plan.sma is not None and plan.signals is None      # sma_crossover takes the compiled path
    # planned here (backtrader loaded), scored in a fresh interpreter that loads only what scoring needs
    bars_file = tmp_path / "bars.pkl"
    env = dict(os.environ, MBATS_STRATEGIES_DIR=str(PROJECT_ROOT / "strategies"))
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(bars_file), pickle.dumps(plan).hex(), ",".join(HEAVY)],
                         env=env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [], f"the scoring path imported {out['loaded']}"
    assert sum(out["trades"]) > 0

    # the lean path is the sweep's own: score_grid on the same bars gives the same trades, bit for bit
    import pandas as pd

    scores = core.score_grid(find_strategy("sma_crossover"), specs, {"GBP_USD": pd.read_pickle(bars_file)}, threads=2)
    assert spec.instruments == [plan.symbol]
    assert (scores.trades, scores.fingerprints, scores.engine) == (out["trades"], out["fingerprints"], out["engine"])
