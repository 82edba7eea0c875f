"""Commands run by a script (stdout piped): only the command's output on stdout, nothing from the
libraries (warnings, MLflow's log lines, progress bars) on either stream, tables whole, JSON parseable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

MBATS = [sys.executable, "-m", "mbats.cli.main"]
# What library noise looks like: warnings, log records, tqdm/rich bars.
NOISE = re.compile(r"Warning|warnings\.warn|INFO |WARNING |DEBUG |Downloading artifacts|\d+%\|| it/s\]")


def piped(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | (env or {})
    proc = subprocess.run([*MBATS, *args], capture_output=True, text=True, env=environment, timeout=900)
    assert proc.returncode == 0, f"mbats {' '.join(args)}: {proc.stderr}"
    return proc


def quiet(proc: subprocess.CompletedProcess) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert not NOISE.search(stream), stream


def test_backtest_with_mlflow_listing_and_report_print_only_their_output(tmp_path):
    # Force the warnings a library would give (pytest's own filters do not reach the subprocess).
    env = {"PYTHONWARNINGS": "default"}
    quiet(piped("data", "sample", "--json", env=env))
    # MLflow tracks into the embedded PostgreSQL: its first use creates its tables (alembic INFO lines).
    run = piped("backtest", "sma_crossover", "-i", "EUR_USD", "-g", "H1", "-p", "fast=7", "-p", "slow=33",
                "--json", env=env)
    quiet(run)
    result = json.loads(run.stdout)
    assert result["mlflow_run_id"]

    listing = piped("runs", "--json", env=env)
    quiet(listing)
    assert json.loads(listing.stdout)[0]["id"] == result["run_id"]
    quiet(table := piped("runs", env=env))
    header = next(line for line in table.stdout.splitlines() if "max DD %" in line)
    assert len(header) > 80  # sized for the content, not cut at a terminal's 80 columns
    assert "…" not in table.stdout

    shown = piped("report", str(result["run_id"]), env=env)
    quiet(shown)
    # the longest cell (the broker settings) is printed whole on one line
    assert "sizer" in shown.stdout and "…" not in shown.stdout
    assert json.loads(piped("report", str(result["run_id"]), "--json").stdout)["code_version"].startswith("mbats ")
    quiet(data := piped("data", "list", "--json", env=env))
    assert any(row["symbol"] == "EUR_USD" for row in json.loads(data.stdout))
    # a sweep's progress bars are for terminals; a script gets the results only
    sweep = piped("sweep", "sma_crossover", "-i", "EUR_USD", "-g", "H1", "--grid", "fast=5,10", "--grid", "slow=40,60",
                  "--top", "1", "--workers", "1", "--json", env=env)
    quiet(sweep)
    # only mbats's own notice may appear: the compiled core's one-time "compiling" line (fresh cache)
    assert [line for line in sweep.stderr.splitlines()
            if line.strip() and not line.startswith("WARNING: compiling the scoring core")] == []
    assert len(json.loads(sweep.stdout)["scores"]) == 4


def test_library_warnings_land_in_the_log_file(tmp_path):
    home = Path(os.environ["MBATS_HOME"])
    script = ("import warnings, logging\n"
              "from mbats.cli.quiet import install, log_path\n"
              "install()\n"
              "warnings.warn('a library complains', DeprecationWarning)\n"
              "logging.getLogger('mlflow.store').warning('mlflow says something')\n"
              "logging.getLogger('mbats.live').warning('the platform says something')\n"
              "print(log_path())\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "a library complains" not in proc.stderr and "mlflow says" not in proc.stderr
    assert "the platform says something" in proc.stderr  # mbats's own notices stay visible
    log = Path(proc.stdout.strip())
    assert log == home / "logs" / "cli.log"
    text = log.read_text()
    assert "a library complains" in text and "mlflow says something" in text


def test_every_listing_or_report_command_a_script_would_read_has_json():
    import typer

    from mbats.cli.main import app

    root = typer.main.get_command(app)
    scripted = [["runs"], ["report"], ["ml", "models"], ["ml", "promote"], ["ml", "train"], ["data", "list"],
                ["data", "gaps"], ["data", "financing", "list"], ["sweep"], ["backtest"], ["live", "status"]]
    for path in scripted:
        command = root
        for word in path:
            command = command.commands[word]
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in options, f"mbats {' '.join(path)} has no --json"
