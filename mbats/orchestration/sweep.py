"""Parameter sweeps as Airflow mapped tasks: expand a grid, run one configuration, rank.

Each configuration is an ordinary backtest with ``run_type="sweep"`` and a shared ``sweep_id``,
recorded in the risk database and logged to MLflow as a child of the sweep's parent run.
Ranking writes each run's place as the ``sweep_rank`` metric in ``run_metrics``, so the ranking
lives in the risk database next to the runs (Superset and ``mbats runs`` can read it).

When :mod:`mbats.research` provides ``run_sweep_config`` / ``rank_sweep`` (issue 9) those are
used instead of the fallbacks here.
"""

from __future__ import annotations

import importlib
import itertools
import math
import uuid
from datetime import datetime, timezone

from mbats.errors import MbatsError

MAX_CONFIGS = 1000  # Airflow's default max_map_length is 1024
LOWER_IS_BETTER = {"max_drawdown_pct", "max_drawdown_days", "annual_volatility_pct"}
RANK_METRIC = "sweep_rank"


class SweepConfError(MbatsError):
    """The sweep's conf (strategy, instruments, range, grid) is invalid."""


def _research(name: str):
    try:
        return getattr(importlib.import_module("mbats.research"), name, None)
    except ImportError:
        return None


def _range_values(name: str, spec) -> list:
    if not isinstance(spec, dict) or "start" not in spec or "stop" not in spec:
        raise SweepConfError(f"range for {name!r} must be {{start, stop, step}} (stop inclusive)")
    start, stop, step = spec["start"], spec["stop"], spec.get("step", 1)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop, step)) or step <= 0:
        raise SweepConfError(f"range for {name!r} needs numeric start/stop and a positive step")
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise SweepConfError(f"range for {name!r} needs finite start/stop/step")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count <= 0:
        raise SweepConfError(f"range for {name!r} is empty (start {start} > stop {stop})")
    if count > MAX_CONFIGS:  # refuse before building the list
        raise SweepConfError(f"range for {name!r} has {count:,} values; the limit is {MAX_CONFIGS} configurations")
    integral = all(isinstance(v, int) for v in (start, stop, step))
    return [start + i * step if integral else round(start + i * step, 10) for i in range(count)]


def _number(conf: dict, key: str, default, cast):
    """A numeric conf value (0 stays 0, not the default); text that is not a number is a conf error."""
    value = conf.get(key)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = cast(value)
        if cast is int and float(value) != number:
            raise ValueError
        return number
    except (TypeError, ValueError, OverflowError):
        raise SweepConfError(f"conf.{key}: {value!r} is not a{'n integer' if cast is int else ' number'}") from None


def normalize_conf(conf: dict | None) -> dict:
    """Validate the DAG run conf and fill defaults; raise :class:`SweepConfError` on mistakes."""
    conf = dict(conf or {})
    strategy = conf.get("strategy")
    if not isinstance(strategy, str) or not strategy:
        raise SweepConfError("conf.strategy is required, e.g. \"sma_crossover\"")
    instruments = conf.get("instruments") or []
    if isinstance(instruments, str):
        instruments = [s.strip() for s in instruments.split(",") if s.strip()]
    if not instruments:
        raise SweepConfError("conf.instruments is required, e.g. [\"EUR_USD\"]")
    grid = dict(conf.get("grid") or {})
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepConfError(f"grid values for {name!r} must be a non-empty list")
    for name, spec in (conf.get("ranges") or {}).items():
        grid[name] = _range_values(name, spec)
    if not grid:
        raise SweepConfError("give a parameter grid (conf.grid: {name: [values]}) or ranges "
                             "(conf.ranges: {name: {start, stop, step}})")
    from mbats.kernel.strategies import coerce_params, find_strategy

    cls = find_strategy(strategy)  # unknown strategy → NotFoundError naming the available ones
    for name in grid:
        for value in grid[name]:  # every value, so an absurd one fails now, not in a mapped task later
            try:
                coerce_params(cls, {name: value})
            except MbatsError as exc:
                raise SweepConfError(f"grid parameter {name!r}: {exc}") from None
    size = math.prod(len(v) for v in grid.values())
    if size > MAX_CONFIGS:
        raise SweepConfError(f"the grid has {size} configurations; the limit is {MAX_CONFIGS} per sweep")
    out = {
        "strategy": strategy,
        "instruments": [s.upper() for s in instruments],
        "granularity": conf.get("granularity") or "H1",
        "start": conf.get("start"),
        "end": conf.get("end"),
        "grid": grid,
        "metric": conf.get("metric") or "sharpe",
        "top": _number(conf, "top", 5, int),
        "cash": _number(conf, "cash", 100_000.0, float),
        "commission": _number(conf, "commission", 0.0, float),
        "spread_pips": _number(conf, "spread_pips", 0.0, float),
        "sizer": conf.get("sizer") or "fixed:units=10000",
        "sweep_id": conf.get("sweep_id") or f"sweep-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
    }
    _check_ranges(out)
    return out


def _check_ranges(conf: dict) -> None:
    """The same ranges as `mbats backtest` (cash > 0, commission and spread >= 0 and finite, sizer, dates)."""
    from mbats.cli.options import parse_when
    from mbats.specs import BacktestRequest, check

    if not isinstance(conf["top"], int) or not 0 <= conf["top"] <= 1000:
        raise SweepConfError(f"conf.top: must be from 0 to 1000 (got {conf['top']!r})")
    try:
        check(BacktestRequest, {
            "strategy": conf["strategy"], "instruments": conf["instruments"], "granularity": conf["granularity"],
            "start": parse_when(conf["start"], "conf.start") if conf["start"] else None,
            "end": parse_when(conf["end"], "conf.end") if conf["end"] else None,
            "cash": conf["cash"], "commission": conf["commission"], "spread_pips": conf["spread_pips"],
            "sizer": conf["sizer"]}, {k: f"conf.{k}" for k in BacktestRequest.model_fields})
    except MbatsError as exc:
        raise SweepConfError(str(exc)) from None


def expand_grid(conf: dict) -> list[dict]:
    """One dict of parameters per configuration (cartesian product, grid order kept)."""
    names = list(conf["grid"])
    return [dict(zip(names, values)) for values in itertools.product(*(conf["grid"][n] for n in names))]


def label(params: dict) -> str:
    """A short label for the Airflow UI's mapped-task list, e.g. ``fast=5 slow=20``."""
    return " ".join(f"{k}={v}" for k, v in params.items())


def start_parent_run(conf: dict) -> str | None:
    """An MLflow parent run for the sweep (children are linked to it); its run id."""
    import mlflow

    from mbats.tracking import use_experiment

    experiment_id = use_experiment()
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=conf["sweep_id"], tags={
        "mbats.sweep_id": conf["sweep_id"], "mbats.strategy": conf["strategy"],
        "mbats.instruments": ",".join(conf["instruments"]), "mbats.run_type": "sweep-parent"})
    client.log_param(run.info.run_id, "grid", str(conf["grid"])[:6000])
    client.log_param(run.info.run_id, "metric", conf["metric"])
    return run.info.run_id


def _spec(conf: dict, params: dict):
    from mbats.backtest.runner import BacktestSpec

    import pandas as pd

    def when(value):
        if value in (None, ""):
            return None
        ts = pd.Timestamp(value)
        return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()

    return BacktestSpec(strategy=conf["strategy"], instruments=list(conf["instruments"]),
                        granularity=conf["granularity"], start=when(conf.get("start")), end=when(conf.get("end")),
                        params=dict(params), cash=conf["cash"], commission=conf["commission"],
                        spread_pips=conf["spread_pips"], sizer=conf["sizer"], run_type="sweep",
                        sweep_id=conf["sweep_id"])


def run_config(conf: dict, params: dict, parent_run_id: str | None = None) -> dict:
    """Backtest one configuration of the sweep; a JSON-able summary (run id, metrics)."""
    research = _research("run_sweep_config")
    if research is not None:
        result = research(_spec(conf, params), parent_run_id=parent_run_id)
    else:
        from mbats.backtest.runner import run_backtest

        result = run_backtest(_spec(conf, params), track=True, write_report=False)
        if parent_run_id and result.mlflow_run_id:
            import mlflow

            mlflow.MlflowClient().set_tag(result.mlflow_run_id, "mlflow.parentRunId", parent_run_id)
    if isinstance(result, dict):
        return result
    return {"run_id": result.run_id, "params": result.params, "metrics": result.metrics,
            "mlflow_run_id": result.mlflow_run_id, "label": label(params)}


def _score(metrics: dict, metric: str) -> float | None:
    value = metrics.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return -value if metric in LOWER_IS_BETTER else value


def rank(sweep_id: str, metric: str = "sharpe", top: int = 5, parent_run_id: str | None = None) -> dict:
    """Rank the sweep's finished runs by ``metric``; store ranks in the risk DB; the best ``top``."""
    research = _research("rank_sweep")
    if research is not None:
        summary = research(sweep_id, metric=metric, top=top)
        if parent_run_id:
            _close_parent(parent_run_id, summary, metric)
        return summary
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        runs = store.list_runs(conn, limit=MAX_CONFIGS * 2, sweep_id=sweep_id)
        finished = [r for r in runs if r["status"] == "finished"]
        if not finished:
            raise MbatsError(f"sweep {sweep_id}: no finished runs to rank ({len(runs)} runs, all failed or running)")
        scored = sorted(finished, key=lambda r: (_score(r["metrics"], metric) is None,
                                                 -(_score(r["metrics"], metric) or 0.0), r["id"]))
        with conn.cursor() as cur:
            cur.execute("DELETE FROM run_metrics WHERE metric = %s AND run_id = ANY(%s)",
                        (RANK_METRIC, [r["id"] for r in runs]))
            cur.executemany("INSERT INTO run_metrics (run_id, metric, value) VALUES (%s, %s, %s)",
                            [(r["id"], RANK_METRIC, float(i + 1)) for i, r in enumerate(scored)])
        conn.commit()
    finally:
        conn.close()
    best = [{"rank": i + 1, "run_id": r["id"], "params": r["params"], metric: r["metrics"].get(metric),
             "total_return_pct": r["metrics"].get("total_return_pct"), "trades": r["metrics"].get("trades"),
             "mlflow_run_id": r["mlflow_run_id"]} for i, r in enumerate(scored[:top])]
    summary = {"sweep_id": sweep_id, "metric": metric, "runs": len(runs), "finished": len(finished),
               "failed": sum(r["status"] == "failed" for r in runs), "best": best}
    if parent_run_id:
        _close_parent(parent_run_id, summary, metric)
    return summary


def _close_parent(parent_run_id: str, summary: dict, metric: str) -> None:
    import mlflow

    from mbats.tracking import use_experiment

    use_experiment()
    client = mlflow.MlflowClient()
    client.log_metric(parent_run_id, "configurations", summary["runs"])
    client.log_metric(parent_run_id, "failed", summary["failed"])
    if summary["best"] and summary["best"][0].get(metric) is not None:
        client.log_metric(parent_run_id, f"best_{metric}", float(summary["best"][0][metric]))
        client.set_tag(parent_run_id, "mbats.best_run_id", str(summary["best"][0]["run_id"]))
        client.set_tag(parent_run_id, "mbats.best_params", str(summary["best"][0]["params"])[:5000])
    client.set_terminated(parent_run_id, "FINISHED")
