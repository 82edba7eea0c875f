"""Two-stage parameter sweeps: score every configuration vectorised, re-run the best in backtrader.

Stage 1 scores the whole grid in this process with the compiled core (:mod:`mbats.research.core`:
numba threads, one copy of the bars, each indicator once per grid); a grid the core cannot model
(several instruments, a sizer other than ``fixed``) runs :func:`vector_simulate` per configuration
on a process pool instead (a bracket strategy such as ``rsi_atr``, which has no ``signals()``: every
configuration runs in backtrader), and the result's ``notes`` say so.
Stage 2 re-runs the top N through :func:`run_backtest` (``run_type="sweep"``, a shared
``sweep_id``), so the ranked results carry backtrader's exact fills, and compares each re-run
with its vectorised score: they *agree* when the trade lists are identical (same fingerprint)
and total return differs by at most ``tolerance_pct`` percentage points.
Everything lands in the risk DB (``sweeps``, ``sweep_scores``, ``runs``, written through
:mod:`mbats.risk.store`) and in MLflow as a parent run whose children are the backtrader re-runs.

The CLI (:func:`run_sweep`, the whole grid in one process) and the Airflow DAG (the same stages
split into tasks: :func:`open_sweep`, :func:`score_chunk` per chunk of configurations,
:func:`confirm_sweep`) run the same code and rank by the same rule (:func:`sort_key`).
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
from mbats.errors import MbatsError
from mbats.kernel.signals import has_brackets, has_signals
from mbats.kernel.strategies import coerce_params, find_strategy, strategy_name
from mbats.kernel.trades import trades_fingerprint
from mbats.research.core import score_grid, unsupported
from mbats.research.grid import MAX_BACKTRADER_CONFIGS, MAX_CONFIGS, check_size, expand_grid, label
from mbats.research.vectorised import vector_simulate
from mbats.risk.metrics import METRIC_DESCRIPTIONS, compute_metrics

# The one ranking rule of every sweep (CLI, DAG, walk-forward): these metrics are better when lower.
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
    # the vectorised core cannot model financing: its backtrader re-runs leave it out too (and say so)
    spec = replace(spec, financing=False)
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
    check_rank_by(req.rank_by)
    if req.top < 0:
        raise MbatsError("--top must be 0 or more")
    coerce_params(cls, {k: v[0] for k, v in req.grid.items()} | req.base.params)
    return cls


def scored_fast(cls: type, base: BacktestSpec) -> bool:
    """Does stage 1 score this grid without backtrader? Signal strategies always (the core, or
    vector_simulate per configuration); bracket strategies when the core can model the grid."""
    if has_signals(cls):
        return True
    return has_brackets(cls) and unsupported(cls, [base]) is None


def check_rank_by(metric: str) -> None:
    if metric not in METRIC_DESCRIPTIONS:
        raise MbatsError(f"cannot rank by '{metric}'; metrics: {', '.join(METRIC_DESCRIPTIONS)}")


def config_limit(cls: type, base: BacktestSpec) -> tuple[int, str | None]:
    """How many configurations a sweep of this strategy and setup may have, and why no more."""
    if not has_signals(cls) and not has_brackets(cls):
        return MAX_BACKTRADER_CONFIGS, (f"{strategy_name(cls)} has no vectorised signals, so every configuration "
                                        "is a backtrader run")
    why = unsupported(cls, [base])
    if why is not None:
        return MAX_BACKTRADER_CONFIGS, f"the compiled scoring core cannot model this grid: {why}"
    return MAX_CONFIGS, None


def configurations(cls: type, base: BacktestSpec, grid: dict[str, list]) -> list[BacktestSpec]:
    """One spec per configuration of ``grid`` (grid order), within the limit of :func:`config_limit`."""
    limit, why = config_limit(cls, base)
    check_size(grid, limit, why)
    return [replace(base, params=coerce_params(cls, dict(base.params) | params)) for params in expand_grid(grid, limit)]


def score_stage(cls: type, specs: list[BacktestSpec], bars: dict[str, pd.DataFrame], workers: int, pool: Executor,
                progress: Progress | None = None, first_id: int = 0) -> tuple[list[ConfigScore], str, list[str]]:
    """Stage 1: every configuration's vectorised score (config ids from ``first_id``), engine, notes.

    A strategy without vectorised signals gets empty scores: backtrader scores it in stage 2.
    """
    fast = has_signals(cls) or has_brackets(cls)
    why = unsupported(cls, specs) if fast else None
    if fast and why is None:
        grid = score_grid(cls, specs, bars, threads=workers, progress=progress)
        scores = [ConfigScore(first_id + i, spec.params, grid.metrics[i], grid.trades[i], grid.fingerprints[i],
                              grid.seconds / len(specs)) for i, spec in enumerate(specs)]
        return scores, grid.engine, list(grid.notes)
    if has_signals(cls):
        vector = _map(pool, _vector_task, [(spec, i) for i, spec in enumerate(specs)], "vectorised", progress)
        scores = [ConfigScore(first_id + r["config_id"], specs[r["config_id"]].params, r["metrics"], r["trades"],
                              r["trades_sha256"], r["seconds"]) for r in sorted(vector, key=lambda r: r["config_id"])]
        return scores, "processes", [f"the scoring core cannot model this grid ({why}): each configuration ran "
                                     "vector_simulate on the process pool"]
    notes = [f"the scoring core cannot model this grid ({why}): every configuration runs in backtrader"] if why else []
    return [ConfigScore(first_id + i, spec.params, {}, 0, "", 0.0) for i, spec in enumerate(specs)], "backtrader", notes


def confirm_stage(pool: Executor, cls: type, chosen: list[tuple[ConfigScore, BacktestSpec]], record: bool,
                  tolerance_pct: float, progress: Progress | None = None) -> None:
    """Stage 2: re-run the chosen configurations in backtrader and compare each with its score (in place)."""
    reruns = _map(pool, _backtrader_task, [(spec, s.config_id, record) for s, spec in chosen], "backtrader",
                  progress)
    by_id = {s.config_id: s for s, _ in chosen}
    fast = bool(chosen) and scored_fast(cls, chosen[0][1])
    for r in reruns:
        _apply_rerun(by_id[r["config_id"]], r, fast, tolerance_pct)


def _apply_rerun(s: ConfigScore, r: dict, fast: bool, tolerance_pct: float) -> None:
    s.run_id, s.bt_metrics, s.bt_trades_sha256 = r["run_id"], r["metrics"], r["trades_sha256"]
    s.bt_seconds, s.mlflow_run_id = r["seconds"], r["mlflow_run_id"]
    if not fast:  # backtrader is the only score
        s.metrics, s.trades, s.trades_sha256 = r["metrics"], int(r["metrics"].get("trades") or 0), r["trades_sha256"]
    s.agrees, s.difference = compare(s.metrics, s.trades_sha256, r["metrics"], r["trades_sha256"], tolerance_pct)


def rank_scores(scores: list[ConfigScore], rank_by: str) -> None:
    """Sort best first by the one ranking rule (ties: grid order) and number the places."""
    scores.sort(key=lambda s: (sort_key(s.metrics, rank_by), s.config_id))
    for place, s in enumerate(scores, 1):
        s.rank = place


def run_sweep(req: SweepRequest, bars: dict[str, pd.DataFrame] | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Score the grid vectorised, re-run the top ``req.top`` in backtrader, compare, record, rank."""
    cls = _validate(req)
    workers = req.workers or os.cpu_count() or 1
    sweep_id = req.sweep_id or new_sweep_id(strategy_name(cls))
    base = replace(req.base, run_type="sweep", sweep_id=sweep_id)
    specs = configurations(cls, base, req.grid)
    bars_from_db = bars is None
    bars = bars if bars is not None else load_bars(base)
    if req.record:
        _record_sweep_start(req.grid, base, req.rank_by, req.top, req.tolerance_pct, len(specs), workers)

    with _pool_for(workers, bars) as pool:
        started = time.perf_counter()
        scores, engine, notes = score_stage(cls, specs, bars, workers, pool, progress)
        vector_seconds = time.perf_counter() - started
        rank_scores(scores, req.rank_by)
        fast = scored_fast(cls, base)
        top = req.top if fast else len(scores)
        started = time.perf_counter()
        confirm_stage(pool, cls, [(s, specs[s.config_id]) for s in scores[:top]], req.record, req.tolerance_pct,
                      progress)
        backtrader_seconds = time.perf_counter() - started
    if not fast:
        rank_scores(scores, req.rank_by)
    result = SweepResult(sweep_id, strategy_name(cls), req.rank_by, req.tolerance_pct, scores, workers,
                         vector_seconds, backtrader_seconds, engine=engine, notes=notes)
    if req.record and bars_from_db:  # every re-run read the same bars: record their sources once for all of them
        _record_sources(base, [s.run_id for s in scores if s.run_id is not None])  # (before MLflow copies them)
    if req.track and req.record:
        for s in result.rerun:
            s.mlflow_run_id = _log_child(specs[s.config_id], s, strategy_name(cls))
        result.mlflow_run_id = _log_parent(result, req.grid, req.base.instruments, req.top)
    if req.record:
        _record_sweep_end(result)
    return result


# --- the same stages as scheduler tasks (the backtest_sweep DAG) ---------------------------------

CHUNK_CONFIGS = 5_000   # compiled-core configurations per mapped task (10,000 ≈ 1 min on 2 cores)


def plan_chunks(base: BacktestSpec, grid: dict[str, list], tasks: int = 2) -> list[dict]:
    """Split the grid into mapped tasks: ``[{"first", "count", "label"}]``, configurations in grid order.

    The compiled core scores a chunk of up to :data:`CHUNK_CONFIGS` configurations in one task (at least
    ``tasks`` chunks, so every runner gets work); a strategy without vectorised signals gets one backtrader
    run per task.
    """
    cls = find_strategy(base.strategy)
    limit, why = config_limit(cls, base)
    total = check_size(grid, limit, why)
    if not scored_fast(cls, base):
        parts = total
    else:
        parts = min(total, max(tasks, math.ceil(total / CHUNK_CONFIGS)))
    bounds = [round(i * total / parts) for i in range(parts + 1)]
    configs = expand_grid(grid, limit) if parts == total else None
    chunks = []
    for lo, hi in zip(bounds, bounds[1:]):
        name = label(configs[lo]) if configs is not None else f"configurations {lo + 1}-{hi} of {total}"
        chunks.append({"first": lo, "count": hi - lo, "label": name})
    return chunks


def open_sweep(base: BacktestSpec, grid: dict[str, list], rank_by: str, top: int,
               tolerance_pct: float = DEFAULT_TOLERANCE_PCT, workers: int = 1, track: bool = True) -> str | None:
    """Record the sweep (status running) and open its MLflow parent run (``track``); the parent's id."""
    cls = find_strategy(base.strategy)
    check_rank_by(rank_by)
    specs = configurations(cls, base, grid)
    _record_sweep_start(grid, base, rank_by, top, tolerance_pct, len(specs), workers)
    return open_parent_run(base.sweep_id, strategy_name(cls), base.instruments, grid, rank_by) if track else None


def score_chunk(base: BacktestSpec, grid: dict[str, list], first: int, count: int, parent_run_id: str | None = None,
                threads: int | None = None) -> dict:
    """Stage 1 for configurations ``first … first+count-1`` of the grid, into ``sweep_scores``.

    Signal strategies are scored by the compiled core (on ``threads`` threads, default all cores);
    a strategy without vectorised signals is run in backtrader, recorded and tracked as a child of
    ``parent_run_id``. Rewriting the same rows makes a retried chunk harmless.
    """
    from mbats.db import connect
    from mbats.risk import store

    cls = find_strategy(base.strategy)
    specs = configurations(cls, base, grid)[first:first + count]
    if not specs:
        raise MbatsError(f"sweep {base.sweep_id}: no configurations {first + 1}-{first + count}")
    bars = load_bars(base)
    threads = threads or os.cpu_count() or 1
    started = time.perf_counter()
    with _pool_for(1, bars) as pool:   # one task, one process: the core's threads do the parallel work
        scores, engine, notes = score_stage(cls, specs, bars, threads, pool, first_id=first)
        if not scored_fast(cls, base):
            done = _finished_runs(base.sweep_id)
            for s, spec in zip(scores, specs):
                if _reuse(s, done, False):
                    continue
                confirm_stage(pool, cls, [(s, spec)], True, DEFAULT_TOLERANCE_PCT)
                s.mlflow_run_id = _log_child(spec, s, strategy_name(cls), parent_run_id)
    conn = connect("risk")
    try:
        store.save_sweep_scores(conn, base.sweep_id, [_score_row(s) for s in scores])
    finally:
        conn.close()
    return {"sweep_id": base.sweep_id, "first": first, "count": len(specs), "engine": engine, "notes": notes,
            "seconds": time.perf_counter() - started}


def _finished_runs(sweep_id: str) -> list[dict]:
    """The sweep's finished runs; unfinished ones (a worker died mid-run) are deleted, their MLflow runs KILLED."""
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        gone = store.discard_unfinished_sweep_runs(conn, sweep_id)
        runs = [r for r in store.list_runs(conn, limit=1_000_000, sweep_id=sweep_id) if r["status"] == "finished"]
    finally:
        conn.close()
    if gone:
        import mlflow

        client = mlflow.MlflowClient()
        for run in gone:
            if run["mlflow_run_id"]:
                client.set_terminated(run["mlflow_run_id"], status="KILLED")
    return runs


def _reuse(s: ConfigScore, runs: list[dict], fast: bool) -> bool:
    """Take an earlier attempt's finished backtrader run of this configuration (a retried task), if any."""
    run = next((r for r in runs if all(r["params"].get(k) == v for k, v in s.params.items())), None)
    if run is None:
        return False
    s.run_id, s.bt_metrics, s.mlflow_run_id = run["id"], run["metrics"], run["mlflow_run_id"]
    if not fast:
        s.metrics, s.trades = run["metrics"], int(run["metrics"].get("trades") or 0)
    return True


def confirm_sweep(base: BacktestSpec, grid: dict[str, list], rank_by: str, top: int,
                  tolerance_pct: float = DEFAULT_TOLERANCE_PCT, parent_run_id: str | None = None,
                  track: bool = True) -> dict:
    """Stage 2 over the scored chunks: rank, re-run the top ``top`` in backtrader, compare, record, summarise.

    Re-runs already finished by an earlier attempt are kept, so a retried task makes no duplicates.
    """
    from mbats.db import connect
    from mbats.risk import store

    cls = find_strategy(base.strategy)
    sweep_id = base.sweep_id
    conn = connect("risk")
    try:
        rows = store.read_sweep_scores(conn, sweep_id)
    finally:
        conn.close()
    if not rows:
        raise MbatsError(f"sweep {sweep_id}: no configuration was scored (every chunk failed?)")
    scores = [ConfigScore(r["config_id"], r["params"], r["metrics"], r["trades"] or 0, r["trades_sha256"] or "",
                          r["seconds"] or 0.0, run_id=r["run_id"], agrees=r["agrees"], difference=r["difference"] or {})
              for r in rows]
    rank_scores(scores, rank_by)
    done = _finished_runs(sweep_id)
    started = time.perf_counter()
    if scored_fast(cls, base):
        bars = load_bars(base)
        with _pool_for(1, bars) as pool:
            for s in scores[:top]:
                if _reuse(s, done, True):
                    continue
                spec = replace(base, params=coerce_params(cls, dict(base.params) | s.params))
                confirm_stage(pool, cls, [(s, spec)], True, tolerance_pct)
                if track:
                    if s.run_id is not None:  # the child's MLflow tags copy its data sources
                        _record_sources(base, [s.run_id])
                    s.mlflow_run_id = _log_child(spec, s, strategy_name(cls), parent_run_id)
                conn = connect("risk")
                try:  # linked at once: a retry after a crash finds this run and does not redo it
                    store.save_sweep_scores(conn, sweep_id, [_score_row(s)])
                finally:
                    conn.close()
    else:
        by_id = {r["id"]: r for r in done}
        for s in scores:
            if s.run_id in by_id:
                s.bt_metrics = by_id[s.run_id]["metrics"]
    result = SweepResult(sweep_id, strategy_name(cls), rank_by, tolerance_pct, scores, 1,
                         sum(s.seconds for s in scores), time.perf_counter() - started)
    if track and parent_run_id:
        result.mlflow_run_id = _log_parent(result, grid, base.instruments, top, parent=parent_run_id)
    _record_sweep_end(result)
    _record_sources(base, [s.run_id for s in scores if s.run_id is not None])
    return sweep_summary(result, top)


def sweep_summary(result: SweepResult, top: int) -> dict:
    """What the DAG's last task returns (XCom): counts, the best ``top`` and any disagreement."""
    confirmed = result.rerun
    best = [{"rank": s.rank, "config_id": s.config_id, "run_id": s.run_id, "params": s.params,
             result.rank_by: (s.bt_metrics or s.metrics).get(result.rank_by),
             "total_return_pct": (s.bt_metrics or s.metrics).get("total_return_pct"),
             "trades": (s.bt_metrics or s.metrics).get("trades"), "agrees": s.agrees, "mlflow_run_id": s.mlflow_run_id}
            for s in result.scores[:top]]
    return {"sweep_id": result.sweep_id, "metric": result.rank_by, "configs": len(result.scores),
            "runs": len(confirmed), "finished": len(confirmed), "disagreements": [s.config_id for s in result.disagreements],
            "best": best, "mlflow_run_id": result.mlflow_run_id}


def _record_sources(base: BacktestSpec, run_ids: list[int]) -> None:
    from mbats.backtest.runner import data_sources
    from mbats.db import connect
    from mbats.risk import store

    if not run_ids:
        return
    sources = data_sources(base)
    conn = connect("risk")
    try:
        store.set_data_sources(conn, run_ids, sources)
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

def _record_sweep_start(grid: dict, base: BacktestSpec, rank_by: str, top: int, tolerance_pct: float, configs: int,
                        workers: int) -> None:
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        store.create_sweep(conn, sweep_id=base.sweep_id, strategy=base.strategy, instruments=base.instruments,
                           granularity=base.granularity, grid=grid,
                           broker={"cash": base.cash, "commission": base.commission, "spread_pips": base.spread_pips,
                                   "sizer": base.sizer, "params": base.params},
                           rank_by=rank_by, top_n=top, tolerance_pct=tolerance_pct, configs=configs, workers=workers)
    finally:
        conn.close()


def _score_row(s: ConfigScore) -> dict:
    return {"config_id": s.config_id, "params": s.params, "metrics": s.metrics, "trades": s.trades,
            "trades_sha256": s.trades_sha256, "seconds": s.seconds, "rank": s.rank, "run_id": s.run_id,
            "agrees": s.agrees, "difference": s.difference or None}


def _record_sweep_end(result: SweepResult) -> None:
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        store.save_sweep_scores(conn, result.sweep_id, [_score_row(s) for s in result.scores])
        store.finish_sweep(conn, result.sweep_id, result.vector_seconds, result.backtrader_seconds,
                           result.mlflow_run_id)
    finally:
        conn.close()
    if result.rerun:
        store_ranks(result.sweep_id, result.rank_by)


def _log_child(spec: BacktestSpec, score: ConfigScore, strategy: str, parent_run_id: str | None = None) -> str:
    """Log a backtrader re-run to MLflow as ``run_backtest(track=True)`` would, and link the risk-DB run."""
    from mbats.backtest.runner import BacktestResult
    from mbats.db import connect
    from mbats.risk import store
    from mbats.tracking import log_backtest

    result = BacktestResult(score.run_id, strategy, score.params, spec.instruments, spec.granularity,
                            score.bt_metrics or {}, pd.DataFrame(), pd.DataFrame(), 0, score.bt_seconds or 0.0)
    mlflow_run_id = log_backtest(result, spec)
    if parent_run_id:
        import mlflow

        mlflow.MlflowClient().set_tag(mlflow_run_id, "mlflow.parentRunId", parent_run_id)
    conn = connect("risk")
    try:
        store.set_run_fields(conn, score.run_id, mlflow_run_id=mlflow_run_id)
    finally:
        conn.close()
    return mlflow_run_id


def _log_parent(result: SweepResult, grid: dict, instruments: list[str], top: int, parent: str | None = None) -> str:
    """An MLflow parent run for the sweep; the backtrader re-runs become its children."""
    import mlflow

    from mbats.tracking import use_experiment

    use_experiment()
    client = mlflow.MlflowClient()
    if parent is None:  # the DAG opens its parent run first (children link to it as they finish)
        parent = open_parent_run(result.sweep_id, result.strategy, instruments, grid, result.rank_by)
    client.log_param(parent, "top", top)
    client.log_param(parent, "tolerance_pct", result.tolerance_pct)
    client.log_metric(parent, "configurations", len(result.scores))
    client.log_metric(parent, "disagreements", len(result.disagreements))
    client.log_metric(parent, "vector_seconds", result.vector_seconds)
    client.log_metric(parent, "backtrader_seconds", result.backtrader_seconds)
    best = result.scores[0] if result.scores else None
    if best is not None and best.metrics.get(result.rank_by) is not None:
        client.log_metric(parent, f"best_{result.rank_by}", float(best.metrics[result.rank_by]))
        client.set_tag(parent, "mbats.best_params", str(best.params)[:5000])
    if best is not None and best.run_id is not None:
        client.set_tag(parent, "mbats.best_run_id", str(best.run_id))
    for s in result.rerun:
        if s.mlflow_run_id:
            client.set_tag(s.mlflow_run_id, "mlflow.parentRunId", parent)
    with tempfile.TemporaryDirectory() as folder:
        from mbats.research import sweep_artifacts

        sweep_artifacts.write(result, grid, Path(folder))  # scores csv + a heatmap of a 2-parameter grid
        client.log_artifacts(parent, folder)
    client.set_terminated(parent, "FINISHED")
    return parent


def open_parent_run(sweep_id: str, strategy: str, instruments: list[str], grid: dict, rank_by: str) -> str:
    """An MLflow parent run for the sweep; its run id (the backtrader re-runs become its children)."""
    import mlflow

    from mbats.tracking import use_experiment

    experiment_id = use_experiment()
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=sweep_id, tags={
        "mbats.sweep_id": sweep_id, "mbats.strategy": strategy, "mbats.instruments": ",".join(instruments),
        "mbats.run_type": "sweep-parent"})
    client.log_param(run.info.run_id, "grid", str(grid)[:6000])
    client.log_param(run.info.run_id, "rank_by", rank_by)
    return run.info.run_id


def store_ranks(sweep_id: str, metric: str) -> list[dict]:
    """Rank the sweep's finished backtrader runs by ``metric``; keep each place as ``sweep_rank``."""
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        runs = store.list_runs(conn, limit=100_000, sweep_id=sweep_id)
        finished = sorted((r for r in runs if r["status"] == "finished"),
                          key=lambda r: (sort_key(r["metrics"], metric), r["id"]))
        store.set_sweep_ranks(conn, sweep_id, [r["id"] for r in finished])
        for i, r in enumerate(finished, 1):
            r["rank"] = i
        return runs
    finally:
        conn.close()
