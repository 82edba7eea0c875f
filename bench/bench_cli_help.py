"""How long `mbats --help` and `mbats <group> --help` take, and which heavy modules they load.

Target (issue 14): ≤ 0.5 s per help. Each help runs in a fresh interpreter, as a user's shell runs
it; wall time depends on how busy the machine is, so the CPU time (user + system) of the process
is reported too, and the heavy libraries it imported (none is the goal: they load inside the
command that needs them).

    .cache/venv/bin/python bench/bench_cli_help.py [--repeat 5] [--src DIR]

--src runs another checkout's ``mbats`` (e.g. an exported older commit) for a before/after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HELPS = [[], ["backtest"], ["sweep"], ["data"], ["data", "download"], ["db"], ["live"], ["live", "trade"],
         ["sim", "serve"], ["ml"], ["ml", "train"], ["dashboards"], ["runs"]]
HEAVY = ("pandas", "numpy", "backtrader", "mlflow", "sqlalchemy", "psycopg2", "numba", "oandapyV20", "sklearn",
         "pydantic", "pydantic_settings", "matplotlib", "rich.markdown")
TARGET_S = 0.5


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _help(argv: list[str], env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    # `python -m` puts the working directory first on sys.path: run in the checkout being timed.
    proc = subprocess.run([sys.executable, *flags, "-m", "mbats.cli.main", *argv, "--help"], cwd=env["MBATS_SRC"],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or "Usage:" not in proc.stdout:
        raise SystemExit(f"mbats {' '.join(argv)} --help failed ({proc.returncode}): {proc.stderr[-500:]}")
    return proc


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one `mbats … --help` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    _help(argv, env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _heavy_modules(argv: list[str], env: dict[str, str]) -> list[str]:
    """The heavy libraries one `mbats … --help` imports (from a separate `-X importtime` run)."""
    stderr = _help(argv, env, "-X", "importtime").stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in modules]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per help (median reported)")
    parser.add_argument("--src", help="directory holding the mbats package to time (default: this checkout)")
    args = parser.parse_args()
    src = os.path.abspath(args.src or ROOT)
    env = os.environ.copy() | {"PYTHONPATH": src, "MBATS_SRC": src}
    print(f"{'command':<28}{'wall s (median)':>17}{'cpu s (median)':>16}  heavy modules loaded")
    worst = 0.0
    for argv in HELPS:
        runs = [_timed(argv, env) for _ in range(args.repeat)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        worst = max(worst, wall)
        heavy = _heavy_modules(argv, env)
        print(f"{'mbats ' + ' '.join(argv) + ' --help':<28}{wall:>17.3f}{cpu:>16.3f}  {', '.join(heavy) or '-'}")
    load = os.getloadavg()[0]
    print(f"slowest median wall {worst:.3f} s (target ≤ {TARGET_S} s: {'met' if worst <= TARGET_S else 'NOT met'}); "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
