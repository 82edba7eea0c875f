"""Airflow ``backtest_sweep`` of 20 configurations vs ``mbats sweep`` of the same grid, and where the
per-task overhead of the DAG goes.

Starts its own Airflow (``services/airflow/start.sh``: api-server, scheduler, dag-processor,
LocalExecutor with 4 worker slots) on the platform's PostgreSQL (the embedded one unless
MBATS_DATABASE_URL is set; metadata in a database ``airflow_bench``), loads the sample bars, then:

1. ``mbats sweep sma_crossover`` of 5 x 4 = 20 configurations on EUR_USD H1 (2017-06..2018-01),
   top 5 re-run in backtrader, as a subprocess (interpreter start included);
2. the same sweep through the DAG (prepare → chunks → score_chunk ×tasks → confirm), triggered over
   REST; wall time from the trigger to the run's end;
3. per task instance: queued → started (executor), started → ended (task process: DAG parse,
   imports, DB/MLflow connections, the work), and for score_chunk the scoring seconds it reports;
4. the cost of each piece on its own: interpreter start, ``import airflow.sdk``, parsing the DAG
   file, importing the sweep code, a risk-DB connection, an MLflow client's first call.

``--no-preload`` turns off services/airflow/airflow_local_settings.py's preload (the sweep code
imported once in the process that forks the tasks), to compare with the old per-task imports.

Run with the Airflow venv: ``.cache/venv-airflow/bin/python bench/bench_dag_sweep.py [--tasks 2]``.
Startup of the Airflow components is not counted. Prints the figures and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
START = ROOT / "services" / "airflow" / "start.sh"
GRID = {"fast": [5, 10, 15, 20, 25], "slow": [30, 40, 50, 60]}  # 20 configurations
SWEEP = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
         "start": "2017-06-01", "end": "2018-01-01", "metric": "sharpe", "top": 5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_run(args: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(f"{' '.join(args[:6])}… failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - started


def pieces() -> dict[str, float]:
    """Each part of a task's start-up, measured alone (median of 3, in fresh interpreters)."""
    def median(code: str) -> float:
        runs = sorted(timed_run([PY, "-c", code]) for _ in range(3))
        return runs[1]

    base = median("pass")
    sdk = median("import airflow.sdk")
    parse = median("import airflow.sdk, runpy; runpy.run_path(%r)" % str(ROOT / "dags" / "backtest_sweep.py"))
    research = median("import mbats.research.sweep")
    db = median("from mbats.db import connect; connect('risk').close()")
    mlflow = median("from mbats.tracking import use_experiment; use_experiment()")
    return {"interpreter": base, "import airflow.sdk": sdk - base, "parse the DAG file": parse - sdk,
            "import mbats.research.sweep": research - base, "risk-DB connection (+ mbats.db import)": db - base,
            "MLflow client, first call (+ import)": mlflow - base}


class Airflow:
    def __init__(self, home: Path, preload: bool = True) -> None:
        from mbats.db import database_url, ensure_database

        ensure_database("airflow_bench")
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {
            "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home), "AIRFLOW_API_PORT": str(self.port), "AIRFLOW_ADMIN_PASSWORD": self.password,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url("airflow_bench", driver="postgresql+psycopg2"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5", "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        if not preload:  # services/airflow/airflow_local_settings.py imports nothing ahead of the task forks
            self.env["MBATS_AIRFLOW_PRELOAD"] = ""
        self.procs: list[subprocess.Popen] = []
        self.logs = home / "logs-bench"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self):
        import httpx

        subprocess.run([str(START), "migrate"], env=self.env, check=True, capture_output=True, timeout=600)
        for name in ("api-server", "scheduler", "dag-processor"):
            log = open(self.logs / f"{name}.log", "wb")
            self.procs.append(subprocess.Popen([str(START), name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True, cwd=ROOT))
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                r = httpx.get(f"{base}/api/v2/monitor/health", timeout=5)
                if r.status_code == 200 and r.json()["scheduler"]["status"] == "healthy":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("Airflow did not become healthy; see " + str(self.logs))
            time.sleep(2)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": self.password},
                           timeout=30).json()["access_token"]
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        while self.client.get("/api/v2/dags/backtest_sweep").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("backtest_sweep was not parsed; see " + str(self.logs))
            time.sleep(2)
        self.client.patch("/api/v2/dags/backtest_sweep", json={"is_paused": False}).raise_for_status()
        return self

    def sweep(self, conf: dict) -> dict:
        started = time.perf_counter()
        r = self.client.post("/api/v2/dags/backtest_sweep/dagRuns", json={"logical_date": None, "conf": conf})
        r.raise_for_status()
        run_id = r.json()["dag_run_id"]
        while True:
            run = self.client.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                break
            time.sleep(0.5)
        wall = time.perf_counter() - started
        if run["state"] != "success":
            raise SystemExit(f"the DAG run {run_id} failed; see {self.logs}")
        tis = self.client.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}/taskInstances",
                              params={"limit": 100}).json()["task_instances"]
        work = {}
        for ti in tis:
            if ti["task_id"] == "score_chunk":
                x = self.client.get(f"/api/v2/dags/backtest_sweep/dagRuns/{run_id}/taskInstances/score_chunk/"
                                    f"xcomEntries/return_value", params={"map_index": ti["map_index"]}).json()
                value = x.get("value")
                value = json.loads(value) if isinstance(value, str) else value
                work[ti["map_index"]] = float(value["seconds"]) if value else None
        return {"wall": wall, "run": run, "tis": tis, "work": work}

    def stop(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _ts(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2, help="mapped scoring tasks (score_chunk) at least")
    ap.add_argument("--keep", action="store_true", help="keep the Airflow home folder")
    ap.add_argument("--no-preload", action="store_true",
                    help="MBATS_AIRFLOW_PRELOAD='': tasks import the sweep code themselves (the old behaviour)")
    args = ap.parse_args()

    from mbats.db import connect
    from mbats.db.migrate import upgrade_all
    from mbats.secmaster.samples import load_samples

    upgrade_all()
    conn = connect("secmaster")
    load_samples(conn)
    conn.commit()
    conn.close()

    cli = [PY, "-m", "mbats.cli.main", "sweep", SWEEP["strategy"], "-i", "EUR_USD", "-g", "H1", "--start",
           SWEEP["start"], "--end", SWEEP["end"], "--top", str(SWEEP["top"]), "--json",
           "--grid", "fast=" + ",".join(map(str, GRID["fast"])), "--grid", "slow=" + ",".join(map(str, GRID["slow"]))]
    timed_run(cli)  # warm: numba's cache, the OS file cache
    t_cli = min(timed_run(cli) for _ in range(2))

    home = Path(tempfile.mkdtemp(prefix="mbats-bench-airflow-"))
    airflow = Airflow(home, preload=not args.no_preload)
    try:
        airflow.start()
        conf = {**SWEEP, "grid": GRID, "tasks": args.tasks}
        airflow.sweep({**conf, "sweep_id": f"bench-warm-{uuid.uuid4().hex[:6]}"})  # first run: serialisation, caches
        result = airflow.sweep({**conf, "sweep_id": f"bench-{uuid.uuid4().hex[:6]}"})
    finally:
        airflow.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    parts = pieces()

    tis = sorted(result["tis"], key=lambda t: (t["start_date"] or "", t["map_index"]))
    print(f"backtest_sweep, {len(GRID['fast']) * len(GRID['slow'])} configurations, EUR_USD H1 "
          f"{SWEEP['start']}..{SWEEP['end']}, top {SWEEP['top']} re-run in backtrader, {args.tasks} scoring task(s), "
          f"preload {'off' if args.no_preload else 'on'}")
    print(f"  mbats sweep (CLI, interpreter start included) : {t_cli:7.1f} s")
    print(f"  Airflow DAG run, trigger → end               : {result['wall']:7.1f} s  "
          f"({result['wall'] / t_cli:.1f}x the CLI)")
    print("  task instances (queued → start: executor; start → end: the task process):")
    overheads = []
    for t in tis:
        q, s, e = _ts(t["queued_when"]), _ts(t["start_date"]), _ts(t["end_date"])
        run = (e - s).total_seconds()
        work = result["work"].get(t["map_index"]) if t["task_id"] == "score_chunk" else None
        wait = (s - q).total_seconds() if q and s else float("nan")
        label = t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else "")
        extra = f", scoring {work:.2f} s → overhead {run - work:.1f} s" if work is not None else ""
        if work is not None:
            overheads.append(run - work)
        print(f"    {label:16s} queued→start {wait:5.1f} s, run {run:6.1f} s{extra}")
    if overheads:
        print(f"  per-task overhead of score_chunk (run − scoring): {sum(overheads) / len(overheads):.1f} s")
    print("  pieces of a task's start-up, measured alone (s):")
    for k, v in parts.items():
        print(f"    {k:42s} {v:6.2f}")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
