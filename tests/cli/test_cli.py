"""The `mbats` command as a user runs it: help, JSON output, one-line errors without tracebacks."""

import json
import os
import subprocess
import sys

import pytest

MBATS = [sys.executable, "-m", "mbats.cli.main"]


def mbats(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*MBATS, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"mbats {' '.join(args)} failed: {proc.stderr}")
    return proc


def test_every_command_explains_itself():
    from typer.testing import CliRunner

    from mbats.cli.main import app

    runner = CliRunner()
    for command in ([], ["db"], ["data"], ["data", "import"], ["data", "download"], ["data", "gaps"], ["backtest"],
                    ["sweep"], ["runs"], ["report"], ["demo"], ["live"], ["live", "trade"], ["sim", "serve"], ["ml", "train"],
                    ["data", "list"], ["data", "sample"], ["db", "upgrade"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage:" in result.output and "Options:" in result.output and len(result.output) > 150, command
    assert "--param" in runner.invoke(app, ["backtest", "--help"]).output


def test_bad_file_is_one_clear_line_and_loads_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,open,high,low,close\n2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1\n"
                   "2024-01-02T00:01:00Z,1.1,1.0,1.2,1.1\n")
    proc = mbats("data", "import", str(bad), "-i", "CHF_JPY", "-g", "M1", check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.csv: row 2: high is below low" in lines[0]
    listing = json.loads(mbats("data", "list", "--json").stdout)
    assert all(row["symbol"] != "CHF_JPY" for row in listing)


def test_import_list_backtest_runs_report_in_json(tmp_path):
    import numpy as np
    import pandas as pd

    n = 3_000
    ts = pd.date_range("2024-02-05", periods=n, freq="1min", tz="UTC")
    c = 1.25 + np.cumsum(np.random.default_rng(3).normal(0, 2e-4, n))
    pd.DataFrame({"time": ts.strftime("%Y-%m-%d %H:%M:%S"), "open": c, "high": c + 1e-4, "low": c - 1e-4,
                  "close": c, "volume": 5}).to_csv(tmp_path / "naive.csv", index=False)
    first = json.loads(mbats("data", "import", str(tmp_path / "naive.csv"), "-i", "GBP_CAD", "-g", "M1",
                             "--timezone", "UTC", "--json").stdout)
    again = json.loads(mbats("data", "import", str(tmp_path / "naive.csv"), "-i", "GBP_CAD", "-g", "M1",
                             "--timezone", "UTC", "--json").stdout)
    assert first[0]["inserted"] == n and again[0]["inserted"] == 0 and again[0]["unchanged"] == n

    # GBP_CAD books CAD: a USD account needs USD_CAD bars, which are not loaded - one line naming them
    usd = mbats("backtest", "sma_crossover", "-i", "GBP_CAD", "-g", "M1", "--no-mlflow", check=False)
    assert usd.returncode != 0 and "Traceback" not in usd.stderr and "load CAD_USD (or USD_CAD)" in usd.stderr
    run = json.loads(mbats("backtest", "sma_crossover", "-i", "GBP_CAD", "-g", "M1", "-p", "fast=5", "-p", "slow=20",
                           "-p", "allow_short=False", "--spread", "1", "--account-currency", "CAD", "--no-mlflow",
                           "--json").stdout)
    assert run["params"] == {"fast": 5, "slow": 20, "allow_short": False}
    assert run["bars"] == n and run["metrics"]["trades"] > 0 and len(run["trades_sha256"]) == 64

    runs = json.loads(mbats("runs", "--json", "--strategy", "sma_crossover").stdout)
    assert runs[0]["id"] == run["run_id"] and runs[0]["metrics"]["trades"] == run["metrics"]["trades"]
    report = json.loads(mbats("report", str(run["run_id"]), "--json").stdout)
    assert report["status"] == "finished" and report["report_path"].endswith("report.html")
    html = open(report["report_path"], encoding="utf-8").read()
    assert "sma_crossover" in html and "data:image/png;base64," in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backtest", "no_such", "-i", "EUR_USD"], "unknown strategy 'no_such'"),
        (["backtest", "sma_crossover", "-i", "EUR_USD", "-p", "fast"], "expected name=value"),
        (["backtest", "sma_crossover", "-i", "EUR_USD", "-p", "fast=x"], "not an integer"),
        (["backtest", "sma_crossover", "-i", "XXX_YYY", "--no-mlflow"], "unknown instrument 'XXX_YYY'"),
        (["backtest", "sma_crossover", "-i", "EUR_USD", "-g", "Q7"], "unknown granularity 'Q7'"),
        (["report", "999999"], "no run 999999"),
    ],
)
def test_normal_failures_print_one_line(args, message):
    proc = mbats(*args, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_database_down_names_the_setting():
    env = os.environ.copy()
    env["MBATS_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1"
    proc = subprocess.run([*MBATS, "runs"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "MBATS_DATABASE_URL" in proc.stderr


def test_a_wrong_setting_is_one_line_naming_the_variable():
    env = os.environ.copy()
    env["MBATS_EMBEDDED_PG_PORT"] = "abc"
    proc = subprocess.run([*MBATS, "runs"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "MBATS_EMBEDDED_PG_PORT" in proc.stderr
