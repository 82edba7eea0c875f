"""CLI tables piped into a file or another program come out whole, not cut at 80 columns."""

import os
import subprocess
import sys

SCRIPT = ("from mbats.cli.output import table; "
          "table('runs', ['run', 'strategy', 'params'], [(1, 'sma_crossover', 'fast=10 slow=40 ' + 'x' * 150)])")


def _piped(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | env_extra
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          check=True).stdout


def test_a_piped_table_keeps_every_cell_whole():
    out = _piped({})
    assert "fast=10 slow=40 " + "x" * 150 in out
    assert "…" not in out


def test_columns_still_sets_the_width_when_given():
    out = _piped({"COLUMNS": "60"})
    assert max(len(line) for line in out.splitlines()) <= 60
