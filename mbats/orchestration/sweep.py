"""The ``backtest_sweep`` DAG's steps: its conf checked and turned into the research sweep's calls.

The sweep itself is :mod:`mbats.research.sweep`, the same code ``mbats sweep`` runs: chunks of
configurations scored by the compiled core (one mapped task per chunk), then the top N re-run in
backtrader, compared, ranked and recorded (``sweeps``, ``sweep_scores``, runs with ``run_type='sweep'``
and their ``sweep_rank``) with an MLflow parent run whose children are the re-runs.

``conf.search = "optuna"`` runs ``mbats sweep --search optuna`` instead (:func:`mbats.research.search.run_search`):
TPE's next trials depend on the scores so far, so nothing is mapped; the ``confirm`` task runs the
whole search (budget ``trials`` and/or ``timeout``, ``seed``, ``study``/``resume``, ``prune``), which
records the sweep and its MLflow runs itself. The study lives under MBATS_HOME of the runner that
ran it, so ``resume`` continues a study on that runner.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone

from mbats.errors import MbatsError
from mbats.research import grid as grids


def _research():
    """:mod:`mbats.research.sweep`, imported when a task runs (the DAG file must parse fast)."""
    from mbats.research import sweep

    return sweep


class SweepConfError(MbatsError):
    """The sweep's conf (strategy, instruments, range, grid) is invalid."""


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


def _grid(conf: dict) -> dict[str, list]:
    grid = dict(conf.get("grid") or {})
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepConfError(f"grid values for {name!r} must be a non-empty list")
    for name, spec in (conf.get("ranges") or {}).items():
        if not isinstance(spec, dict) or "start" not in spec or "stop" not in spec:
            raise SweepConfError(f"range for {name!r} must be {{start, stop, step}} (stop inclusive)")
        try:
            grid[name] = grids.range_values(name, spec["start"], spec["stop"], spec.get("step", 1))
        except grids.GridError as exc:
            raise SweepConfError(str(exc)) from None
    if not grid:
        raise SweepConfError("give a parameter grid (conf.grid: {name: [values]}) or ranges "
                             "(conf.ranges: {name: {start, stop, step}})")
    return grid


SEARCH_KEYS = ("trials", "timeout", "seed", "study", "resume", "prune")   # optuna only


def _search(conf: dict, cls: type) -> dict:
    """The search settings of a conf: grid (nothing else) or optuna with a usable budget."""
    search = conf.get("search") or "grid"
    if search not in ("grid", "optuna"):
        raise SweepConfError(f"conf.search: {search!r} is not grid or optuna")
    given = {k: conf.get(k) for k in SEARCH_KEYS if conf.get(k) not in (None, False, "")}
    if search == "grid":
        if given:
            raise SweepConfError(f"conf.{', conf.'.join(given)} apply to search optuna only")
        return {"search": "grid"}
    from mbats.kernel.signals import has_brackets, has_signals
    from mbats.research.search import check_budget

    out = {"search": "optuna", "trials": _number(conf, "trials", None, int),
           "timeout": _number(conf, "timeout", None, float), "seed": _number(conf, "seed", 0, int),
           "study": conf.get("study") or None, "resume": bool(conf.get("resume")), "prune": bool(conf.get("prune"))}
    try:
        check_budget(out["trials"], out["timeout"])
    except MbatsError as exc:
        raise SweepConfError(str(exc).replace("--", "conf.")) from None
    if not (has_signals(cls) or has_brackets(cls)):
        raise SweepConfError("search optuna needs a strategy the sweep core scores (vectorised signals or brackets)")
    return out


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
    grid = _grid(conf)
    from mbats.kernel.strategies import coerce_params, find_strategy

    cls = find_strategy(strategy)  # unknown strategy → NotFoundError naming the available ones
    for name in grid:
        for value in grid[name]:  # every value, so an absurd one fails now, not in a mapped task later
            try:
                coerce_params(cls, {name: value})
            except MbatsError as exc:
                raise SweepConfError(f"grid parameter {name!r}: {exc}") from None
    out = {
        "strategy": strategy,
        "instruments": [s.upper() for s in instruments],
        "granularity": conf.get("granularity") or "H1",
        "start": conf.get("start"),
        "end": conf.get("end"),
        "grid": grid,
        "metric": conf.get("metric") or "sharpe",
        "top": _number(conf, "top", 5, int),
        "tasks": _number(conf, "tasks", 2, int),
        "cash": _number(conf, "cash", 100_000.0, float),
        "commission": _number(conf, "commission", 0.0, float),
        "spread_pips": _number(conf, "spread_pips", 0.0, float),
        "sizer": conf.get("sizer") or "fixed:units=10000",
        "sweep_id": conf.get("sweep_id") or f"sweep-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        **_search(conf, cls),
    }
    _check_ranges(out)
    research = _research()
    try:
        research.check_rank_by(out["metric"])
        limit, why = research.config_limit(cls, base_spec(out))
        grids.check_size(grid, limit, why)
    except MbatsError as exc:
        raise SweepConfError(str(exc)) from None
    return out


def _check_ranges(conf: dict) -> None:
    """The same ranges as `mbats backtest` (cash > 0, commission and spread >= 0 and finite, sizer, dates)."""
    from mbats.dates import parse_utc as parse_when
    from mbats.specs import BacktestRequest, check

    if not isinstance(conf["top"], int) or not 0 <= conf["top"] <= 1000:
        raise SweepConfError(f"conf.top: must be from 0 to 1000 (got {conf['top']!r})")
    if not 1 <= conf["tasks"] <= 64:
        raise SweepConfError(f"conf.tasks: must be from 1 to 64 (got {conf['tasks']!r})")
    try:
        check(BacktestRequest, {
            "strategy": conf["strategy"], "instruments": conf["instruments"], "granularity": conf["granularity"],
            "start": parse_when(conf["start"], "conf.start") if conf["start"] else None,
            "end": parse_when(conf["end"], "conf.end") if conf["end"] else None,
            "cash": conf["cash"], "commission": conf["commission"], "spread_pips": conf["spread_pips"],
            "sizer": conf["sizer"]}, {k: f"conf.{k}" for k in BacktestRequest.model_fields})
    except MbatsError as exc:
        raise SweepConfError(str(exc)) from None


def base_spec(conf: dict):
    """The sweep's BacktestSpec (every configuration is this with its parameters)."""
    import pandas as pd

    from mbats.backtest.runner import BacktestSpec

    def when(value):
        if value in (None, ""):
            return None
        ts = pd.Timestamp(value)
        return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()

    return BacktestSpec(strategy=conf["strategy"], instruments=list(conf["instruments"]),
                        granularity=conf["granularity"], start=when(conf.get("start")), end=when(conf.get("end")),
                        cash=conf["cash"], commission=conf["commission"], spread_pips=conf["spread_pips"],
                        sizer=conf["sizer"], run_type="sweep", sweep_id=conf["sweep_id"])


def configurations(conf: dict) -> int:
    return math.prod(len(v) for v in conf["grid"].values())


def prepare(conf: dict | None) -> dict:
    """Check the conf, record the sweep and open its MLflow parent run; the conf the other tasks get."""
    conf = normalize_conf(conf)
    if conf["search"] == "optuna":   # the search records the sweep and opens its MLflow runs itself
        conf["parent_run_id"] = None
        return conf
    conf["parent_run_id"] = _research().open_sweep(base_spec(conf), conf["grid"], conf["metric"], conf["top"],
                                                workers=conf["tasks"])
    return conf


def chunks(conf: dict) -> list[dict]:
    """The mapped tasks: chunks of configurations for the compiled core (one run each without it);
    none for an optuna search (it scores trial batches in the ``confirm`` task)."""
    if conf.get("search") == "optuna":
        return []
    return _research().plan_chunks(base_spec(conf), conf["grid"], conf["tasks"])


def score_chunk(conf: dict, chunk: dict) -> dict:
    return _research().score_chunk(base_spec(conf), conf["grid"], chunk["first"], chunk["count"],
                                conf.get("parent_run_id"))


def confirm(conf: dict) -> dict:
    """Rank every scored configuration, confirm the top N in backtrader, record ranks; the summary.
    An optuna search runs here whole (search, rank, confirm, record)."""
    if not conf:   # the task runs when all upstream are done, also after a failed prepare
        raise SweepConfError("no sweep to confirm: the prepare task failed (see its log)")
    if conf.get("search") == "optuna":
        return search(conf)
    return _research().confirm_sweep(base_spec(conf), conf["grid"], conf["metric"], conf["top"],
                                  parent_run_id=conf.get("parent_run_id"), track=conf.get("parent_run_id") is not None)


def search(conf: dict) -> dict:
    """``mbats sweep --search optuna`` with the conf's budget; the same summary as a grid sweep's."""
    from mbats.research.search import SearchRequest, run_search

    research = _research()
    request = research.SweepRequest(base_spec(conf), conf["grid"], top=conf["top"], rank_by=conf["metric"],
                                    sweep_id=conf["sweep_id"])
    result = run_search(SearchRequest(request, trials=conf["trials"], timeout=conf["timeout"], seed=conf["seed"],
                                      study=conf["study"], resume=conf["resume"], prune=conf["prune"]))
    return {**research.sweep_summary(result, conf["top"]), "search": "optuna", "notes": result.notes}
