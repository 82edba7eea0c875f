"""The CLI package itself: every command lives in mbats/cli/, help loads no heavy library, one date vocabulary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "numpy", "backtrader", "mlflow", "sqlalchemy", "psycopg2", "numba", "oandapyV20", "sklearn",
         "pydantic", "pydantic_settings", "matplotlib", "rich.markdown")
GROUPS = [[], ["backtest"], ["sweep"], ["data"], ["data", "download"], ["data", "gaps"], ["data", "financing"], ["db"], ["live"],
          ["live", "trade"], ["sim", "serve"], ["ml"], ["ml", "train"], ["dashboards"], ["runs"], ["report"]]


def test_help_imports_no_heavy_library():
    """`--help` must not pay for pandas, MLflow, SQLAlchemy, …: they load inside the command that needs them.

    One fresh interpreter shows every help in turn: a heavy module loaded by any of them would be in
    sys.modules at the end.
    """
    probe = ("import contextlib, io, sys\n"
             "from mbats.cli.main import run\n"
             f"for argv in {GROUPS!r}:\n"
             "    out = io.StringIO()\n"
             "    with contextlib.redirect_stdout(out):\n"
             "        try:\n            run([*argv, '--help'])\n"
             "        except SystemExit as e:\n            assert e.code in (0, None), (argv, e.code)\n"
             "    assert 'Usage:' in out.getvalue(), argv\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          env=os.environ.copy(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_commands_live_only_in_the_cli_package():
    """No typer command modules outside mbats/cli/ (one file per command group there)."""
    outside = [str(p.relative_to(ROOT)) for p in (ROOT / "mbats").rglob("*.py")
               if "cli" not in p.relative_to(ROOT / "mbats").parts[:1] and "import typer" in p.read_text()]
    assert outside == []


def test_one_date_vocabulary_with_hidden_old_names():
    from typer.main import get_command

    from mbats.cli.main import app

    root = get_command(app)

    def command(*path):
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        return cmd

    for path in (("backtest",), ("sweep",), ("data", "download"), ("data", "gaps"), ("ml", "train"), ("sim", "serve")):
        options = {opt: p for p in command(*path).params for opt in getattr(p, "opts", [])}
        assert "--start" in options and "--end" in options, path
        assert not options["--start"].hidden and not options["--end"].hidden, path
        if path in (("backtest",), ("sweep",)):  # the old names still parse, but are not shown
            assert options["--from"].hidden and options["--to"].hidden


def test_old_date_flags_mean_the_same_as_the_new():
    from mbats.cli.backtest import backtest_values

    args = ("sma_crossover", ["EUR_USD"], "H1")
    rest = ([], 100_000.0, 0.0, 0.0, "fixed:units=10000")
    new = backtest_values(*args, "2024-01-01", "2024-02-01", *rest)
    old = backtest_values(*args, None, None, *rest, old_start="2024-01-01", old_end="2024-02-01")
    assert new == old and new["start"].isoformat() == "2024-01-01T00:00:00+00:00"


def test_live_help_names_the_real_confirmation_phrase():
    from typer.testing import CliRunner

    from mbats.cli.main import app
    from mbats.live.config import LIVE_CONFIRMATION

    out = CliRunner().invoke(app, ["live", "trade", "--help"], env={"COLUMNS": "300"}).output
    assert f"MBATS_LIVE_CONFIRM={LIVE_CONFIRMATION}" in out
