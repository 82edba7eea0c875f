"""Two-stage parameter sweeps: score every configuration vectorised, re-run the best in backtrader.

Stage 1 scores the whole grid in this process with the compiled core (:mod:`mbats.research.core`:
numba threads, one copy of the bars, each indicator once per grid); a grid the core cannot model
(several instruments, a sizer other than ``fixed``) runs :func:`vector_simulate` per configuration
on a process pool instead, and the result's ``notes`` say so.
Stage 2 re-runs the top N through :func:`run_backtest` (``run_type="sweep"``, a shared
``sweep_id``), so the ranked results carry backtrader's exact fills, and compares each re-run
with its vectorised score: they *agree* when the trade lists are identical (same fingerprint)
and total return differs by at most ``tolerance_pct`` percentage points.
Everything lands in the risk DB (``sweeps``, ``sweep_scores``, ``runs``) and in MLflow as a
parent run whose children are the backtrader re-runs.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from mbats.backtest.runner import BacktestSpec, load_bars, run_backtest, simulate
from mbats.kernel.trades import trades_fingerprint
from mbats.kernel.signals import has_signals
from mbats.kernel.strategies import coerce_params, find_strategy, strategy_name
from mbats.errors import MbatsError
from mbats.research.core import score_grid, unsupported
from mbats.research.grid import expand_grid
from mbats.research.vectorised import vector_simulate
from mbats.risk.metrics import METRIC_DESCRIPTIONS, compute_metrics

LOWER_IS_BETTER = {"max_drawdown_pct", "max_drawdown_days", "annual_volatility_pct", "var_95_1d_pct",
                   "cvar_95_1d_pct"}
DEFAULT_TOLERANCE_PCT = 0.01  # percentage points of total return

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class SweepRequest:
    base: BacktestSpec                   # strategy, instruments, range, costs; base.params are fixed
    grid: dict[str, list]
    top: int = 5
    rank_by: str = "sharpe"
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT
    workers: int | None = None           # default: all local cores
    track: bool = True                   # MLflow parent + child runs
    record: bool = True                  # risk DB (sweeps, sweep_scores, runs)
    sweep_id: str | None = None


@dataclass
class ConfigScore:
    config_id: int
    params: dict[str, object]
    metrics: dict[str, float | None]
    trades: int
    trades_sha256: str
    seconds: float
    rank: int | None = None
    run_id: int | None = None
    bt_metrics: dict[str, float | None] | None = None
    bt_trades_sha256: str | None = None
    bt_seconds: float | None = None
    mlflow_run_id: str | None = None
    agrees: bool | None = None
    difference: dict[str, object] = field(default_factory=dict)


@dataclass
class SweepResult:
    sweep_id: str
    strategy: str
    rank_by: str
    tolerance_pct: float
    scores: list[ConfigScore]            # ranked, best first
    workers: int
    vector_seconds: float
    backtrader_seconds: float
    mlflow_run_id: str | None = None
    engine: str = "processes"            # how stage 1 ran: numba / numpy (the core) or processes
    notes: list[str] = field(default_factory=list)

    @property
    def rerun(self) -> list[ConfigScore]:
        return [s for s in self.scores if s.bt_metrics is not None]

    @property
    def disagreements(self) -> list[ConfigScore]:
        return [s for s in self.rerun if not s.agrees]

    def table(self) -> pd.DataFrame:
        """One row per configuration, best first: vectorised and (for the top N) backtrader figures."""
        rows = []
        for s in self.scores:
            bt_metrics = s.bt_metrics or {}
            rows.append({"rank": s.rank, **s.params,
                         f"vec_{self.rank_by}": s.metrics.get(self.rank_by),
                         "vec_return_pct": s.metrics.get("total_return_pct"), "vec_trades": s.trades,
                         f"bt_{self.rank_by}": bt_metrics.get(self.rank_by),
                         "bt_return_pct": bt_metrics.get("total_return_pct"), "bt_trades": bt_metrics.get("trades"),
                         "agrees": s.agrees, "run_id": s.run_id})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {"sweep_id": self.sweep_id, "strategy": self.strategy, "rank_by": self.rank_by,
                "tolerance_pct": self.tolerance_pct, "workers": self.workers,
                "vector_seconds": self.vector_seconds, "backtrader_seconds": self.backtrader_seconds,
                "mlflow_run_id": self.mlflow_run_id, "configs": len(self.scores), "engine": self.engine,
                "notes": self.notes,
                "disagreements": [s.config_id for s in self.disagreements],
                "scores": [_score_dict(s) for s in self.scores]}


def _score_dict(s: ConfigScore) -> dict:
    return {"rank": s.rank, "config_id": s.config_id, "params": s.params, "vectorised": s.metrics,
            "trades": s.trades, "trades_sha256": s.trades_sha256, "run_id": s.run_id,
            "backtrader": s.bt_metrics, "bt_trades_sha256": s.bt_trades_sha256, "agrees": s.agrees,
            "difference": s.difference or None, "mlflow_run_id": s.mlflow_run_id}


def new_sweep_id(strategy: str) -> str:
    return f"sweep-{strategy}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def sort_key(metrics: dict, metric: str) -> tuple[bool, float]:
    """Best first; missing/NaN scores last."""
    value = metrics.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True, 0.0
    return False, value if metric in LOWER_IS_BETTER else -value


# --- worker side: bars arrive once per process (fork), tasks carry only the spec ------------------

_BARS: dict[str, pd.DataFrame] = {}


def _init_worker(bars: dict[str, pd.DataFrame]) -> None:
    global _BARS
    _BARS = bars


def _vector_task(spec: BacktestSpec, config_id: int) -> dict:
    run = vector_simulate(spec, _BARS)
    return {"config_id": config_id, "metrics": run.metrics, "trades": int((~run.trades["is_open"]).sum()),
            "trades_sha256": trades_fingerprint(run.trades), "seconds": run.seconds}


def _backtrader_task(spec: BacktestSpec, config_id: int, record: bool) -> dict:
    if record:
        # MLflow is logged by the parent process afterwards: no tracking client inside forked workers
        result = run_backtest(spec, track=False, bars=_BARS, write_report=False)
        return {"config_id": config_id, "run_id": result.run_id, "metrics": result.metrics,
                "trades_sha256": result.trades_hash(), "seconds": result.seconds, "mlflow_run_id": None,
                "params": result.params, "bars": result.bars}
    sim = simulate(spec, _BARS)
    metrics = compute_metrics(sim.equity["value"], sim.trades, sim.recording.bars, sim.recording.bars_in_market)
    return {"config_id": config_id, "run_id": None, "metrics": metrics,
            "trades_sha256": trades_fingerprint(sim.trades), "seconds": sim.seconds, "mlflow_run_id": None}


class _Inline(Executor):
    """Runs tasks in this process (workers=1): no fork, easy to profile, same code path."""

    def __init__(self, bars: dict[str, pd.DataFrame]):
        _init_worker(bars)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future like a pool would
            future.set_exception(exc)
        return future


def make_pool(workers: int, bars: dict[str, pd.DataFrame]) -> Executor:
    if workers <= 1:
        return _Inline(bars)
    # fork: the workers inherit the bars (no pickling of 370k-row frames) and the strategy modules
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_init_worker, initargs=(bars,))


def _map(pool: Executor, fn, jobs: list[tuple], stage: str, progress: Progress | None) -> list[dict]:
    futures = [pool.submit(fn, *job) for job in jobs]
    results = []
    for done, future in enumerate(as_completed(futures), 1):
        results.append(future.result())
        if progress:
            progress(stage, done, len(jobs))
    return results


# --- the sweep ----------------------------------------------------------------------------------

def _validate(req: SweepRequest) -> type:
    cls = find_strategy(req.base.strategy)
    if not req.base.instruments:
        raise MbatsError("give at least one instrument")
    if req.rank_by not in METRIC_DESCRIPTIONS:
        raise MbatsError(f"cannot rank by '{req.rank_by}'; metrics: {', '.join(METRIC_DESCRIPTIONS)}")
    if req.top < 0:
        raise MbatsError("--top must be 0 or more")
    coerce_params(cls, {k: v[0] for k, v in req.grid.items()} | req.base.params)
    return cls


def run_sweep(req: SweepRequest, bars: dict[str, pd.DataFrame] | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Score the grid vectorised, re-run the top ``req.top`` in backtrader, compare, record, rank."""
    cls = _validate(req)
    configs = expand_grid(req.grid)
    workers = req.workers or os.cpu_count() or 1
    sweep_id = req.sweep_id or new_sweep_id(strategy_name(cls))
    base = replace(req.base, run_type="sweep", sweep_id=sweep_id)
    bars_from_db = bars is None
    bars = bars if bars is not None else load_bars(base)
    specs = [replace(base, params=coerce_params(cls, dict(base.params) | params)) for params in configs]
    if req.record:
        _record_sweep_start(req, base, sweep_id, len(configs), workers)

    engine, notes = "processes", []
    with _pool_for(workers, bars) as pool:
        started = time.perf_counter()
        why = unsupported(cls, specs) if has_signals(cls) else None
        if has_signals(cls) and why is None:
            grid = score_grid(cls, specs, bars, threads=workers, progress=progress)
            engine, notes = grid.engine, list(grid.notes)
            scores = [ConfigScore(i, spec.params, grid.metrics[i], grid.trades[i], grid.fingerprints[i],
                                  grid.seconds / len(specs)) for i, spec in enumerate(specs)]
            top = req.top
        elif has_signals(cls):
            notes.append(f"the scoring core cannot model this grid ({why}): each configuration ran "
                         "vector_simulate on the process pool")
            vector = _map(pool, _vector_task, [(spec, i) for i, spec in enumerate(specs)], "vectorised", progress)
            scores = [ConfigScore(r["config_id"], specs[r["config_id"]].params, r["metrics"], r["trades"],
                                  r["trades_sha256"], r["seconds"]) for r in vector]
            top = req.top
        else:  # no vectorised signals: every configuration is scored by backtrader itself
            scores = [ConfigScore(i, spec.params, {}, 0, "", 0.0) for i, spec in enumerate(specs)]
            top = len(scores)
        vector_seconds = time.perf_counter() - started

        scores.sort(key=lambda s: (sort_key(s.metrics, req.rank_by), s.config_id))
        started = time.perf_counter()
        chosen = scores[:top]
        reruns = _map(pool, _backtrader_task,
                      [(specs[s.config_id], s.config_id, req.record) for s in chosen],
                      "backtrader", progress)
        backtrader_seconds = time.perf_counter() - started

    by_id = {s.config_id: s for s in scores}
    for r in reruns:
        s = by_id[r["config_id"]]
        s.run_id, s.bt_metrics, s.bt_trades_sha256 = r["run_id"], r["metrics"], r["trades_sha256"]
        s.bt_seconds, s.mlflow_run_id = r["seconds"], r["mlflow_run_id"]
        if not has_signals(cls):
            s.metrics, s.trades, s.trades_sha256 = r["metrics"], int(r["metrics"].get("trades") or 0), r["trades_sha256"]
        s.agrees, s.difference = compare(s.metrics, s.trades_sha256, r["metrics"], r["trades_sha256"],
                                         req.tolerance_pct)
    if not has_signals(cls):
        scores.sort(key=lambda s: (sort_key(s.metrics, req.rank_by), s.config_id))
    for rank, s in enumerate(scores, 1):
        s.rank = rank
    result = SweepResult(sweep_id, strategy_name(cls), req.rank_by, req.tolerance_pct, scores, workers,
                         vector_seconds, backtrader_seconds, engine=engine, notes=notes)
    if req.track and req.record:
        for s in result.rerun:
            s.mlflow_run_id = _log_child(specs[s.config_id], s, strategy_name(cls))
        result.mlflow_run_id = _log_parent(result, req)
    if req.record:
        _record_sweep_end(result)
        if bars_from_db:  # every re-run read the same bars: record their sources once for all of them
            _record_sources(base, [s.run_id for s in scores if s.run_id is not None])
    return result


def _record_sources(base: BacktestSpec, run_ids: list[int]) -> None:
    from psycopg2.extras import Json

    from mbats.backtest.runner import data_sources
    from mbats.db import connect

    if not run_ids:
        return
    sources = data_sources(base)
    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE runs SET data_sources = %s WHERE id = ANY(%s)", (Json(sources), run_ids))
        conn.commit()
    finally:
        conn.close()


class _pool_for:
    """Context manager over :func:`make_pool` that also works for the inline executor."""

    def __init__(self, workers: int, bars: dict[str, pd.DataFrame]):
        self.pool = make_pool(workers, bars)

    def __enter__(self) -> Executor:
        return self.pool

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def compare(vec: dict, vec_sha: str, bt: dict, bt_sha: str, tolerance_pct: float) -> tuple[bool, dict]:
    """Do a vectorised score and its backtrader re-run agree? (and what differs if not)."""
    difference: dict[str, object] = {}
    if vec.get("trades") != bt.get("trades"):
        difference["trades"] = {"vectorised": vec.get("trades"), "backtrader": bt.get("trades")}
    if vec_sha != bt_sha:
        difference["trades_sha256"] = "trade lists differ"
    gap = abs((vec.get("total_return_pct") or 0.0) - (bt.get("total_return_pct") or 0.0))
    if gap > tolerance_pct:
        difference["total_return_pct"] = {"vectorised": vec.get("total_return_pct"),
                                          "backtrader": bt.get("total_return_pct"), "gap": gap}
    return not difference, difference


# --- risk DB and MLflow -------------------------------------------------------------------------

def _record_sweep_start(req: SweepRequest, base: BacktestSpec, sweep_id: str, configs: int, workers: int) -> None:
    from psycopg2.extras import Json

    from mbats.db import connect

    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO sweeps (sweep_id, strategy, instruments, granularity, grid, broker, rank_by, top_n, "
                "tolerance_pct, configs, workers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (sweep_id, base.strategy, base.instruments, base.granularity, Json(req.grid),
                 Json({"cash": base.cash, "commission": base.commission, "spread_pips": base.spread_pips,
                       "sizer": base.sizer, "params": base.params}),
                 req.rank_by, req.top, req.tolerance_pct, configs, workers))
        conn.commit()
    finally:
        conn.close()


def _record_sweep_end(result: SweepResult) -> None:
    from psycopg2.extras import Json, execute_values

    from mbats.db import connect
    from mbats.risk.store import to_jsonable

    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            execute_values(
                cur,
                "INSERT INTO sweep_scores (sweep_id, config_id, params, metrics, trades, trades_sha256, seconds, "
                "rank, run_id, agrees, difference) VALUES %s",
                [(result.sweep_id, s.config_id, Json(to_jsonable(s.params)), Json(s.metrics), s.trades,
                  s.trades_sha256, s.seconds, s.rank, s.run_id, s.agrees, Json(s.difference) if s.difference else None)
                 for s in result.scores])
            cur.execute("UPDATE sweeps SET status = 'finished', finished_at = now(), vector_seconds = %s, "
                        "backtrader_seconds = %s, mlflow_run_id = %s WHERE sweep_id = %s",
                        (result.vector_seconds, result.backtrader_seconds, result.mlflow_run_id, result.sweep_id))
        conn.commit()
    finally:
        conn.close()
    if result.rerun:
        store_ranks(result.sweep_id, result.rank_by)


def _log_child(spec: BacktestSpec, score: ConfigScore, strategy: str) -> str:
    """Log a backtrader re-run to MLflow as ``run_backtest(track=True)`` would, and link the risk-DB run."""
    from mbats.backtest.runner import BacktestResult
    from mbats.db import connect
    from mbats.risk import store
    from mbats.tracking import log_backtest

    result = BacktestResult(score.run_id, strategy, score.params, spec.instruments, spec.granularity,
                            score.bt_metrics or {}, pd.DataFrame(), pd.DataFrame(), 0, score.bt_seconds or 0.0)
    mlflow_run_id = log_backtest(result, spec)
    conn = connect("risk")
    try:
        store.set_run_fields(conn, score.run_id, mlflow_run_id=mlflow_run_id)
    finally:
        conn.close()
    return mlflow_run_id


def _log_parent(result: SweepResult, req: SweepRequest) -> str:
    """An MLflow parent run for the sweep; the backtrader re-runs become its children."""
    import mlflow

    from mbats.tracking import use_experiment

    experiment_id = use_experiment()
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=result.sweep_id, tags={
        "mbats.sweep_id": result.sweep_id, "mbats.strategy": result.strategy,
        "mbats.instruments": ",".join(req.base.instruments), "mbats.run_type": "sweep-parent"})
    parent = run.info.run_id
    client.log_param(parent, "grid", str(req.grid)[:6000])
    client.log_param(parent, "rank_by", req.rank_by)
    client.log_param(parent, "top", req.top)
    client.log_param(parent, "tolerance_pct", req.tolerance_pct)
    client.log_metric(parent, "configurations", len(result.scores))
    client.log_metric(parent, "disagreements", len(result.disagreements))
    client.log_metric(parent, "vector_seconds", result.vector_seconds)
    client.log_metric(parent, "backtrader_seconds", result.backtrader_seconds)
    best = result.scores[0] if result.scores else None
    if best is not None and best.metrics.get(req.rank_by) is not None:
        client.log_metric(parent, f"best_{req.rank_by}", float(best.metrics[req.rank_by]))
        client.set_tag(parent, "mbats.best_params", str(best.params)[:5000])
    for s in result.rerun:
        if s.mlflow_run_id:
            client.set_tag(s.mlflow_run_id, "mlflow.parentRunId", parent)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep_scores.csv"
        result.table().to_csv(path, index=False)
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED")
    return parent


def store_ranks(sweep_id: str, metric: str) -> list[dict]:
    """Rank the sweep's finished backtrader runs by ``metric``; keep each place as ``sweep_rank``."""
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        runs = store.list_runs(conn, limit=100_000, sweep_id=sweep_id)
        finished = sorted((r for r in runs if r["status"] == "finished"),
                          key=lambda r: (sort_key(r["metrics"], metric), r["id"]))
        with conn.cursor() as cur:
            cur.execute("DELETE FROM run_metrics WHERE metric = 'sweep_rank' AND run_id = ANY(%s)",
                        ([r["id"] for r in runs],))
            cur.executemany("INSERT INTO run_metrics (run_id, metric, value) VALUES (%s, 'sweep_rank', %s)",
                            [(r["id"], float(i)) for i, r in enumerate(finished, 1)])
        conn.commit()
        for i, r in enumerate(finished, 1):
            r["rank"] = i
        return runs
    finally:
        conn.close()
