"""Walk-forward optimisation: pick the best configuration on a training window, trade it on the
next (unseen) window, roll forward by the test length, and report metrics of the stitched
out-of-sample results only.

Windows are half-open ``[start, end)`` in time; each test window starts where its training window
ends and test windows follow each other without overlap. Rolling windows keep the training length;
anchored windows (``anchored=True``) all train from the first bar. Indicators are warmed up on the
bars before the test window (they were known at the time), but only test-window trades count.

In-sample, the grid is scored by the sweep's scoring core (:func:`mbats.research.core.score_grid`,
or :func:`vector_simulate` per configuration for a grid the core cannot model) and the winner is
picked by the sweep's ranking rule (:func:`mbats.research.sweep.sort_key`). Out of sample, a signal
strategy's pandas ``signals()`` are traded (``oos_engine`` "vectorised"); a bracket strategy
(``rsi_atr``, no ``signals()``) is traded by the core's own bracket simulation (``oos_engine`` "numba" or
"numpy", :mod:`mbats.research.walkforward_brackets`), which agrees with backtrader trade for trade. The
core models every bracket walk-forward this module accepts (one instrument per window, fixed sizer,
P&L in the quote currency); anything else is refused up front with the reason. Windows are
independent once chosen, so they run on a process pool (``workers``); their out-of-sample P&L is
stitched afterwards, each window starting from the account value the previous one ended with.
:func:`run_walk_forward` does this for several instruments and records the result in the risk DB
(``walk_forwards``, ``walk_forward_windows``, ``walk_forward_equity``) and as an MLflow run.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from mbats.backtest.runner import BacktestSpec
from mbats.errors import MbatsError
from mbats.kernel.costs import fill_cost_per_unit
from mbats.kernel.signals import has_brackets, has_signals
from mbats.kernel.strategies import coerce_params, find_strategy, strategy_name
from mbats.research.grid import expand_grid
from mbats.research.sweep import LOWER_IS_BETTER, check_rank_by, sort_key
from mbats.research.vectorised import fixed_units, trade_targets, vector_simulate
from mbats.risk.metrics import compute_metrics

ALL = "ALL"   # the instruments together, in the stitched equity


@dataclass(frozen=True)
class Window:
    train_start: pd.Timestamp
    train_end: pd.Timestamp   # = test_start
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def walk_forward_windows(index: pd.DatetimeIndex, train: pd.Timedelta | str, test: pd.Timedelta | str,
                         anchored: bool = False) -> list[Window]:
    """Consecutive (train, test) windows over ``index``; the last test window may be shorter.

    Rolling: each training window is ``train`` long and ends where its test window starts.
    Anchored: every training window starts at the first bar (and grows by ``test`` each step).
    A last test window shorter than half of ``test`` joins the one before it (trading that window's
    parameters on): scored alone, a tail of two days gives a Sharpe in the hundreds that would
    swamp the out-of-sample mean.
    """
    train, test = pd.Timedelta(train), pd.Timedelta(test)
    if train <= pd.Timedelta(0) or test <= pd.Timedelta(0):
        raise MbatsError("walk-forward train and test lengths must be positive")
    if len(index) == 0:
        return []
    first, last = index[0], index[-1]
    windows: list[Window] = []
    start = first
    while start + train <= last:
        test_start = start + train
        test_end = min(test_start + test, last + pd.Timedelta(1, "ns"))
        windows.append(Window(first if anchored else start, test_start, test_start, test_end))
        start = start + test
    if len(windows) > 1 and windows[-1].test_end - windows[-1].test_start < test / 2:
        tail = windows.pop()
        windows[-1] = replace(windows[-1], test_end=tail.test_end)
    return windows


@dataclass
class WalkForwardResult:
    windows: list[Window]
    chosen: list[dict]            # per window: params, in-sample and out-of-sample score and metrics
    trades: pd.DataFrame          # out-of-sample trades only
    equity: pd.Series             # stitched out-of-sample account value
    metrics: dict[str, float | None]
    instrument: str = ""
    rank_by: str = "sharpe"


# --- one window (runs in a worker process) --------------------------------------------------------

def _best_in_sample(cls: type, base: BacktestSpec, configs: list[dict], in_sample: dict[str, pd.DataFrame],
                    rank_by: str) -> tuple[dict, dict]:
    """The winning configuration of the grid on the training bars and its metrics (the sweep's rule)."""
    from mbats.research.core import score_grid, unsupported

    specs = [replace(base, params=p) for p in configs]
    if unsupported(cls, specs) is None:
        grid = score_grid(cls, specs, in_sample)
        scored = list(zip(grid.metrics, configs))
    else:
        scored = [(vector_simulate(spec, in_sample, cls).metrics, spec.params) for spec in specs]
    # ties: grid order, as the sweep ranks them
    order = min(range(len(scored)), key=lambda i: (sort_key(scored[i][0], rank_by), i))
    return scored[order][1], scored[order][0]


def _run_window(cls: type, base: BacktestSpec, frame: pd.DataFrame, w: Window, configs: list[dict],
                rank_by: str) -> dict:
    """Choose in-sample, trade out-of-sample: the window's P&L relative to its start (value 0)."""
    symbol = base.instruments[0]
    in_sample = {symbol: frame[(frame.index >= w.train_start) & (frame.index < w.train_end)]}
    best, is_metrics = _best_in_sample(cls, base, configs, in_sample, rank_by)
    defaults = {k: getattr(cls.params, k) for k in cls.params._getkeys()}
    history = frame[(frame.index >= w.train_start) & (frame.index < w.test_end)]
    if has_brackets(cls):   # brackets: the core's simulation, warmed up and flattened the same way as below
        from mbats.research.walkforward_brackets import bracket_window

        part = bracket_window(cls, base, history, w.test_start, defaults | best)
        return {"params": best, "is_metrics": is_metrics, "trades": part["trades"], "pnl": part["pnl"],
                "in_market": part["in_market"], "oos_engine": part["engine"]}
    # signals on train+test (warm-up), positions forced flat before the test window
    target = np.asarray(cls.signals(history, **(defaults | best)), dtype=np.int64)
    in_test = history.index >= w.test_start
    target[~in_test] = 0
    target[-2:] = 0  # flat by the window's last open, so each window's trades close inside it
    leg = trade_targets(symbol, history, target, fixed_units(base.sizer), fill_cost_per_unit(base, symbol),
                        base.commission)
    pnl = np.cumsum(leg.cash_flow) + leg.units_held * history["close"].to_numpy()
    return {"params": best, "is_metrics": is_metrics,
            "trades": [t for t in leg.trades if t["entry_ts"] >= w.test_start],
            "pnl": pd.Series(pnl, index=history.index)[in_test],
            "in_market": int((leg.units_held[in_test] != 0).sum()), "oos_engine": "vectorised"}


_FRAMES: dict[str, pd.DataFrame] = {}


def _init_worker(frames: dict[str, pd.DataFrame]) -> None:
    global _FRAMES
    _FRAMES = frames


def _window_task(strategy: str, base: BacktestSpec, w: Window, configs: list[dict], rank_by: str) -> dict:
    cls = find_strategy(strategy)
    return _run_window(cls, base, _FRAMES[base.instruments[0]], w, configs, rank_by)


# --- one instrument -------------------------------------------------------------------------------

def _empty_trades() -> pd.DataFrame:
    return pd.DataFrame({"is_open": pd.Series(dtype=bool), "pnl_net": pd.Series(dtype=float)})


def _stitch(base: BacktestSpec, symbol: str, windows: list[Window], parts: list[dict],
            rank_by: str) -> WalkForwardResult:
    """Chain the windows' P&L into one account; score each window out of sample on its own."""
    chosen, trades, pieces = [], [], []
    value, in_market = base.cash, 0
    for number, (w, part) in enumerate(zip(windows, parts), 1):
        piece = value + part["pnl"]
        window_trades = pd.DataFrame(part["trades"]) if part["trades"] else _empty_trades()
        oos = compute_metrics(piece, window_trades, len(piece), part["in_market"]) if len(piece) else {}
        chosen.append({"window": w, "window_no": number, "params": part["params"], "oos_engine": part["oos_engine"],
                       f"train_{rank_by}": part["is_metrics"].get(rank_by),
                       "is_score": part["is_metrics"].get(rank_by), "oos_score": oos.get(rank_by),
                       "is_metrics": part["is_metrics"], "oos_metrics": oos, "oos_trades": len(part["trades"])})
        trades += part["trades"]
        pieces.append(piece)
        in_market += part["in_market"]
        value = float(piece.iloc[-1]) if len(piece) else value
    equity = pd.concat(pieces)
    trade_frame = pd.DataFrame(trades)
    metrics = compute_metrics(equity, trade_frame if len(trade_frame) else _empty_trades(), len(equity), in_market)
    return WalkForwardResult(windows, chosen, trade_frame, equity, metrics, symbol, rank_by)


def _configs(cls: type, base: BacktestSpec, grid: dict[str, list]) -> list[dict]:
    if not (has_signals(cls) or has_brackets(cls)):
        raise MbatsError(f"walk-forward needs a strategy with vectorised signals or compiled brackets; "
                         f"{strategy_name(cls)} has neither")
    configs = [coerce_params(cls, dict(base.params) | c) for c in expand_grid(grid)]
    if has_brackets(cls):   # scored by the core only (in and out of sample): say why it cannot, up front
        from mbats.research.core import unsupported

        for symbol in base.instruments:
            why = unsupported(cls, [replace(base, instruments=[symbol])])
            if why:
                raise MbatsError(f"walk-forward of {strategy_name(cls)}: {why}")
    return configs


def walk_forward(base: BacktestSpec, bars: dict[str, pd.DataFrame], grid: dict[str, list],
                 train: pd.Timedelta | str, test: pd.Timedelta | str, rank_by: str = "sharpe",
                 anchored: bool = False) -> WalkForwardResult:
    """Optimise ``grid`` on each training window of one instrument, trade the winner on the test window."""
    if len(base.instruments) != 1:
        raise MbatsError("walk_forward runs on one instrument at a time (run_walk_forward takes several)")
    return walk_forward_many(base, bars, grid, train, test, rank_by, anchored, workers=1)[base.instruments[0]]


def walk_forward_many(base: BacktestSpec, bars: dict[str, pd.DataFrame], grid: dict[str, list],
                      train: pd.Timedelta | str, test: pd.Timedelta | str, rank_by: str = "sharpe",
                      anchored: bool = False, workers: int = 1) -> dict[str, WalkForwardResult]:
    """Walk-forward of every instrument of ``base`` (each on its own account of ``base.cash``);
    the (instrument, window) jobs run on ``workers`` processes."""
    check_rank_by(rank_by)
    from mbats.kernel import fx

    for symbol in base.instruments:  # out-of-sample P&L is the quote currency's (trade_targets): say so, not add it
        if fx.needs_conversion([symbol], base.account_currency):
            raise MbatsError(f"walk-forward books P&L in the quote currency: {symbol} is quoted in "
                             f"{fx.quote_currency(symbol)}, the account is {base.account_currency}; "
                             f"set MBATS_ACCOUNT_CURRENCY={fx.quote_currency(symbol)} to run it in that currency")
    cls = find_strategy(base.strategy)
    configs = _configs(cls, base, grid)
    jobs: list[tuple[str, BacktestSpec, Window]] = []
    plan: dict[str, list[Window]] = {}
    for symbol in base.instruments:
        windows = walk_forward_windows(bars[symbol].index, train, test, anchored)
        if not windows:
            raise MbatsError(f"{symbol}: not enough data for one training window ({train}) plus a test window")
        plan[symbol] = windows
        one = replace(base, instruments=[symbol])
        jobs += [(symbol, one, w) for w in windows]
    frames = {s: bars[s] for s in base.instruments}
    if workers <= 1:
        _init_worker(frames)
        parts = [_run_window(cls, one, frames[s], w, configs, rank_by) for s, one, w in jobs]
    else:
        # fork (workers inherit the bars and imports) unless this process has loaded the numba core: its
        # GNU OpenMP threads make a forked child abort ("fork() called from a process already using GNU
        # OpenMP"), so then a forkserver, which gets the bars once per worker (initializer).
        method = "forkserver" if "mbats.research.kernels" in sys.modules else "fork"
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context(method),
                                 initializer=_init_worker, initargs=(frames,)) as pool:
            parts = list(pool.map(_window_task, [base.strategy] * len(jobs), [j[1] for j in jobs],
                                  [j[2] for j in jobs], [configs] * len(jobs), [rank_by] * len(jobs)))
    results, at = {}, 0
    for symbol, windows in plan.items():
        results[symbol] = _stitch(replace(base, instruments=[symbol]), symbol, windows,
                                  parts[at:at + len(windows)], rank_by)
        at += len(windows)
    return results


# --- summary over instruments ---------------------------------------------------------------------

def degradation(results: dict[str, WalkForwardResult], rank_by: str) -> dict[str, float | None]:
    """In-sample vs out-of-sample scores of the chosen configurations, over every instrument's windows.

    ``degradation`` is how much worse out-of-sample is, in the metric's units (positive = worse;
    for lower-is-better metrics such as drawdown the sign is flipped). ``efficiency`` is the
    walk-forward efficiency ratio ``oos_mean / is_mean`` for higher-is-better metrics with a
    positive in-sample mean (1 = no degradation).
    """
    rows = [c for r in results.values() for c in r.chosen]
    is_scores = [c["is_score"] for c in rows if c["is_score"] is not None]
    oos_scores = [c["oos_score"] for c in rows if c["oos_score"] is not None]
    is_mean = float(np.mean(is_scores)) if is_scores else None
    oos_mean = float(np.mean(oos_scores)) if oos_scores else None
    worse = None
    if is_mean is not None and oos_mean is not None:
        worse = oos_mean - is_mean if rank_by in LOWER_IS_BETTER else is_mean - oos_mean
    efficiency = (oos_mean / is_mean if rank_by not in LOWER_IS_BETTER and is_mean and is_mean > 0
                  and oos_mean is not None else None)
    return {"windows": len(rows), "is_mean": is_mean, "oos_mean": oos_mean, "degradation": worse,
            "efficiency": efficiency}


def combined_equity(results: dict[str, WalkForwardResult], cash: float) -> pd.Series:
    """The instruments' stitched P&L added on one account of ``cash`` (each held flat before it starts)."""
    pnl = pd.concat({s: r.equity - cash for s, r in results.items()}, axis=1).sort_index().ffill().fillna(0.0)
    return cash + pnl.sum(axis=1)


@dataclass
class WalkForwardRequest:
    base: BacktestSpec
    grid: dict[str, list]
    train: str
    test: str
    anchored: bool = False
    rank_by: str = "sharpe"
    workers: int | None = None       # default: all local cores
    track: bool = True               # MLflow run
    record: bool = True              # risk DB
    wf_id: str | None = None


@dataclass
class WalkForwardRun:
    wf_id: str
    strategy: str
    rank_by: str
    results: dict[str, WalkForwardResult]
    summary: dict[str, float | None]
    equity: pd.Series                # ALL: the instruments together
    metrics: dict[str, float | None]  # of ``equity``
    seconds: float
    workers: int
    mlflow_run_id: str | None = None
    notes: list[str] = field(default_factory=list)

    def window_rows(self) -> list[dict]:
        return [{"instrument": s, "window_no": c["window_no"], "train_start": c["window"].train_start,
                 "train_end": c["window"].train_end, "test_start": c["window"].test_start,
                 "test_end": c["window"].test_end, "params": c["params"], "is_score": c["is_score"],
                 "oos_score": c["oos_score"], "is_metrics": c["is_metrics"], "oos_metrics": c["oos_metrics"],
                 "oos_trades": c["oos_trades"], "oos_engine": c["oos_engine"]}
                for s, r in self.results.items() for c in r.chosen]

    def to_dict(self) -> dict:
        summary = {("window_count" if k == "windows" else k): v for k, v in self.summary.items()}
        return {"wf_id": self.wf_id, "strategy": self.strategy, "rank_by": self.rank_by, **summary,
                "metrics": self.metrics, "seconds": self.seconds, "workers": self.workers,
                "mlflow_run_id": self.mlflow_run_id,
                "instruments": {s: {"metrics": r.metrics, "trades": len(r.trades)} for s, r in self.results.items()},
                "windows": [{k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()
                             if k not in ("is_metrics", "oos_metrics")} for row in self.window_rows()]}


def new_wf_id(strategy: str) -> str:
    return f"wf-{strategy}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def open_walk_forward(req: WalkForwardRequest) -> str:
    """Validate the request, fix its id and record it (status running) when ``record``; the id."""
    cls = find_strategy(req.base.strategy)
    check_rank_by(req.rank_by)
    _configs(cls, req.base, req.grid)
    walk_forward_windows(pd.DatetimeIndex([pd.Timestamp("2000-01-01", tz="UTC")]), req.train, req.test)
    wf_id = req.wf_id or new_wf_id(strategy_name(cls))
    if req.record:
        from mbats.db import connect
        from mbats.risk.research import create_walk_forward

        conn = connect("risk")
        try:
            create_walk_forward(conn, wf_id=wf_id, strategy=strategy_name(cls), instruments=req.base.instruments,
                                granularity=req.base.granularity, grid=req.grid, broker=_broker(req.base),
                                rank_by=req.rank_by, train=req.train, test=req.test, anchored=req.anchored)
        finally:
            conn.close()
    return wf_id


def _broker(base: BacktestSpec) -> dict:
    return {"cash": base.cash, "commission": base.commission, "spread_pips": base.spread_pips, "sizer": base.sizer,
            "params": base.params, "start": base.start, "end": base.end}


def run_walk_forward(req: WalkForwardRequest, bars: dict[str, pd.DataFrame] | None = None) -> WalkForwardRun:
    """Walk-forward of every instrument, summarised, recorded in the risk DB and logged to MLflow."""
    from mbats.backtest.runner import load_bars

    started = time.perf_counter()
    wf_id = open_walk_forward(req)
    req = replace(req, wf_id=wf_id)
    workers = req.workers or os.cpu_count() or 1
    try:
        bars = bars if bars is not None else load_bars(req.base)
        results = walk_forward_many(req.base, bars, req.grid, req.train, req.test, req.rank_by, req.anchored, workers)
        equity = combined_equity(results, req.base.cash)
        trades = pd.concat([r.trades for r in results.values() if len(r.trades)] or [_empty_trades()])
        metrics = compute_metrics(equity, trades, len(equity), 0)
        metrics.pop("exposure_pct", None)  # not defined for several accounts added together
        run = WalkForwardRun(wf_id, strategy_name(find_strategy(req.base.strategy)), req.rank_by, results,
                             degradation(results, req.rank_by), equity, metrics, 0.0, workers)
        run.seconds = time.perf_counter() - started
        if req.track:
            run.mlflow_run_id = _log_mlflow(run, req)
        if req.record:
            _record(run)
    except BaseException:
        if req.record:
            _record_failure(wf_id)
        raise
    return run


def _record(run: WalkForwardRun) -> None:
    from mbats.db import connect
    from mbats.risk.research import save_walk_forward

    equity = {s: r.equity for s, r in run.results.items()} | {ALL: run.equity}
    conn = connect("risk")
    try:
        save_walk_forward(conn, run.wf_id, windows=run.window_rows(), equity=equity, summary=run.summary,
                          metrics=run.metrics, seconds=run.seconds, mlflow_run_id=run.mlflow_run_id)
    finally:
        conn.close()


def _record_failure(wf_id: str) -> None:
    from mbats.db import connect
    from mbats.risk.research import fail_walk_forward

    try:
        conn = connect("risk")
        try:
            fail_walk_forward(conn, wf_id)
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - the original failure is the one to report
        pass


def _log_mlflow(run: WalkForwardRun, req: WalkForwardRequest) -> str:
    """One parent run: settings, the summary and stitched metrics; per-window scores as metric steps;
    the window table and stitched equity as artifacts; a child run per instrument."""
    import json
    import tempfile
    from pathlib import Path

    import mlflow

    from mbats.risk.store import dumps
    from mbats.tracking import use_experiment

    experiment_id = use_experiment()
    tags = {"mbats.wf_id": run.wf_id, "mbats.strategy": run.strategy, "mbats.run_type": "walk_forward",
            "mbats.instruments": ",".join(req.base.instruments), "mbats.granularity": req.base.granularity}
    finite = lambda d: {k: float(v) for k, v in d.items() if v is not None and np.isfinite(v)}  # noqa: E731
    with mlflow.start_run(experiment_id=experiment_id, run_name=run.wf_id, tags=tags) as parent:
        mlflow.log_params({"train": req.train, "test": req.test, "anchored": req.anchored, "rank_by": req.rank_by,
                           "grid": json.dumps(req.grid)[:500], "spread_pips": req.base.spread_pips,
                           "sizer": req.base.sizer, "cash": req.base.cash, "workers": run.workers})
        mlflow.log_metrics(finite({f"wf_{k}": v for k, v in run.summary.items()}) | finite(run.metrics))
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "windows.json").write_text(dumps(run.to_dict()["windows"]))
            run.equity.rename("value").to_csv(Path(tmp, "equity_oos.csv"), index_label="ts")
            mlflow.log_artifacts(tmp, artifact_path="walk_forward")
        for symbol, result in run.results.items():
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{run.wf_id}-{symbol}", nested=True,
                                  tags=tags | {"mbats.instruments": symbol}):
                mlflow.log_metrics(finite(result.metrics))
                for c in result.chosen:
                    mlflow.log_metrics(finite({"is_score": c["is_score"], "oos_score": c["oos_score"]}),
                                       step=c["window_no"])
        return parent.info.run_id
