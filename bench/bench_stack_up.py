"""How long the local process stack takes to come up: cold (fresh MBATS_HOME, venvs already built)
and warm (`down`, then `up` again on the same data) until every service answers healthy.

Runs ``python -m mbats.stack up`` (what ``make stack-up`` runs once the venvs exist) in a temp folder,
on free ports, with fresh secrets and its own embedded PostgreSQL, so it never touches a running
stack or the repository's ``.env``. Goals (issue 12): warm <= 60 s, cold <= 180 s.

    .cache/venv/bin/python bench/bench_stack_up.py [--warm-runs 2] [--keep]

Prints one line per phase (with the machine's load average: on a shared machine the wall times
mostly measure the other processes) and a JSON summary last. The ``up`` output (the stack's own progress
lines, with their seconds) goes to ``<tmp>/up-<n>.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".cache" / "venv" / "bin" / "python"
SECRETS = ("AIRFLOW_ADMIN_PASSWORD", "SUPERSET_ADMIN_PASSWORD", "SUPERSET_SECRET_KEY", "MBATS_SUPERSET_DB_PASSWORD",
           "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY", "MBATS_RUNNER_DB_PASSWORD", "MBATS_LOADER_DB_PASSWORD",
           "MBATS_SIM_DB_PASSWORD")
PORTS = ("MBATS_EMBEDDED_PG_PORT", "MBATS_STACK_S3_PORT", "MBATS_STACK_MLFLOW_PORT", "MBATS_STACK_AIRFLOW_PORT",
         "MBATS_STACK_AIRFLOW_LOG_PORT", "MBATS_STACK_SUPERSET_PORT", "MBATS_STACK_SUPERVISOR_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_block(size: int = 12) -> int:
    """A base port with ``size`` free ports above it (SeaweedFS's internal listeners)."""
    for _ in range(100):
        base = 20000 + secrets.randbelow(20000)
        taken = False
        for port in range(base, base + size):
            with socket.socket() as s:
                s.settimeout(0.2)
                taken |= s.connect_ex(("127.0.0.1", port)) == 0
        if not taken:
            return base
    raise SystemExit("error: no block of 12 free ports found")


def stack_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MBATS_", "AIRFLOW", "SUPERSET", "MLFLOW"))}
    env |= {name: str(free_port()) for name in PORTS}
    env |= {name: secrets.token_urlsafe(18) for name in SECRETS}
    return env | {"MBATS_HOME": str(tmp / "home"), "MBATS_STACK_DIR": str(tmp / "stack"),
                  "MBATS_STACK_S3_INTERNAL_PORT_BASE": str(port_block()),
                  "MBATS_STACK_UP_TIMEOUT": "3600",  # a busy machine: measure, do not give up at 900 s
                  "MBATS_OANDA_SIM_URL": f"http://127.0.0.1:{free_port()}",
                  "MBATS_STRATEGIES_DIR": str(ROOT / "strategies")}


def stack(env: dict, tmp: Path, *args: str, log: Path | None = None) -> tuple[float, int]:
    t0 = time.monotonic()
    with (log or Path(os.devnull)).open("w") as out:
        rc = subprocess.run([str(PYTHON), "-m", "mbats.stack", *args], env=env, cwd=tmp, stdout=out,
                            stderr=subprocess.STDOUT, timeout=1800).returncode
    return time.monotonic() - t0, rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm-runs", type=int, default=2, help="warm restarts to time (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, data)")
    args = ap.parse_args()
    if args.warm_runs < 0:
        print("error: --warm-runs must be 0 or more", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mbats-bench-stack-"))
    tmp.chmod(0o755)
    env = stack_env(tmp)
    result: dict = {"cold_s": None, "warm_s": [], "down_s": [], "load_1min": []}
    try:
        for run in range(1 + args.warm_runs):
            kind = "cold" if run == 0 else "warm"
            log = tmp / f"up-{run}.log"
            seconds, rc = stack(env, tmp, "up", log=log)
            if rc:
                print(f"error: {kind} stack up failed (exit {rc}); see {log}:\n{log.read_text()[-3000:]}",
                      file=sys.stderr)
                return 1
            load = os.getloadavg()[0]
            result["load_1min"].append(round(load, 1))
            print(f"{kind:5} up   {seconds:6.1f} s   (goal {'180' if kind == 'cold' else '60'} s; "
                  f"1-min load average at the end {load:.1f} on {os.cpu_count()} CPUs)", flush=True)
            if run == 0:
                result["cold_s"] = round(seconds, 1)
            else:
                result["warm_s"].append(round(seconds, 1))
            seconds, rc = stack(env, tmp, "down", log=tmp / f"down-{run}.log")
            result["down_s"].append(round(seconds, 1))
            print(f"      down {seconds:6.1f} s", flush=True)
    finally:
        stack(env, tmp, "down")  # whatever state the runs left
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
