"""`mbats sweep --search optuna` as a user runs it: budget checks, a recorded search, --resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

MBATS = [sys.executable, "-m", "mbats.cli.main"]
SW = ["sweep", "sma_crossover", "-i", "EUR_USD", "--no-mlflow", "--grid", "fast=5:25:5", "--grid", "slow=40,80"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--search", "optuna"], "error: --search optuna needs a budget: --trials N and/or --timeout SECONDS"),
    (["--search", "optuna", "--trials", "0"], "error: --trials must be 1 or more, not 0"),
    (["--search", "optuna", "--timeout", "-5"], "error: --timeout must be a positive number of seconds"),
    (["--search", "optuna", "--timeout", "nan"], "error: --timeout must be a positive number of seconds"),
    (["--trials", "20"], "error: --trials apply to --search optuna only"),
    (["--seed", "3", "--resume"], "error: --seed, --resume apply to --search optuna only"),
    (["--prune"], "error: --prune apply to --search optuna only"),
    (["--search", "bayes", "--trials", "5"], "error: --search: 'bayes' is not grid or optuna"),
])
def test_a_bad_search_budget_is_one_line_and_exit_2(extra, message, capsys):
    from mbats.cli.main import run

    with pytest.raises(SystemExit) as exit_info:
        run([*SW, *extra])
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert exit_info.value.code == 2
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert "Traceback" not in out.out + out.err


def _mbats(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBATS, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=900)


def test_an_optuna_sweep_is_recorded_and_resumes_by_study_name(tmp_path, risk_conn):
    import numpy as np
    import pandas as pd

    n = 4_000
    ts = pd.date_range("2024-03-04", periods=n, freq="1min", tz="UTC")
    c = 0.66 + np.cumsum(np.random.default_rng(11).normal(0, 2e-4, n))
    pd.DataFrame({"time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": c, "high": c + 1e-4, "low": c - 1e-4,
                  "close": c, "volume": 5}).to_csv(tmp_path / "bars.csv", index=False)
    assert _mbats("data", "import", str(tmp_path / "bars.csv"), "-i", "AUD_USD", "-g", "M1").returncode == 0
    args = ["sweep", "sma_crossover", "-i", "AUD_USD", "-g", "M1", "--grid", "fast=5:30:5", "--grid", "slow=40:100:20",
            "--spread", "1", "--top", "2", "--no-mlflow", "--json", "--search", "optuna", "--seed", "5",
            "--study", "cli-search"]

    first = _mbats(*args, "--trials", "6")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["engine"] in ("numba", "numpy") and any("optuna TPE (seed 5)" in n for n in result["notes"])
    assert 1 <= result["configs"] <= 6 and len([s for s in result["scores"] if s["backtrader"]]) == 2
    assert all(s["agrees"] for s in result["scores"] if s["backtrader"])

    again = _mbats(*args, "--trials", "6")
    assert again.returncode == 2 and again.stderr.strip().startswith("error: study 'cli-search' exists")
    assert "Traceback" not in again.stderr

    resumed = _mbats(*args, "--trials", "10", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    more = json.loads(resumed.stdout)
    assert more["sweep_id"] == result["sweep_id"] and any("10 completed trials" in n for n in more["notes"])
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT config_id) FROM sweep_scores WHERE sweep_id = %s",
                    (result["sweep_id"],))
        rows, distinct = cur.fetchone()
        cur.execute("SELECT status, configs FROM sweeps WHERE sweep_id = %s", (result["sweep_id"],))
        assert cur.fetchone() == ("finished", 6 * 4)
    assert rows == distinct == more["configs"] >= result["configs"]
