"""Smart search: Optuna's TPE sampler over a sweep's grid, on the sweep's two-stage engine.

``mbats sweep --search optuna`` takes the same ``--grid`` as the exhaustive sweep and turns each
parameter's values into an Optuna distribution (:func:`search_space`): an evenly spaced range
of integers becomes an ``IntDistribution`` with that step, of decimals a ``FloatDistribution``
with that step (samples snap to the grid's own values), anything else a categorical choice. Every
trial is therefore a point of the grid, identified by its grid position (``config_id``), so a
search and a grid sweep of the same grid give comparable, joinable results.

Trials are asked in batches of :data:`BATCH` and each batch is scored in one call of the compiled
core (:func:`mbats.research.sweep.score_stage`, threads across the batch); a configuration TPE
proposes again is told its earlier score instead of being scored twice. When the budget is spent
(``trials``: completed trials of the study in all, ``timeout``: seconds of this call), the distinct
configurations are ranked and the top N re-run in backtrader (:func:`~mbats.research.sweep.confirm_stage`),
recorded in ``sweeps`` / ``sweep_scores`` and MLflow exactly as a grid sweep.

Storage: an SQLite file under MBATS_HOME (``optuna/studies.sqlite3``), not the risk Postgres:
Optuna's RDB storage runs its own Alembic migrations and keeps its own ``alembic_version`` table,
which would collide with the risk database's; the study is the search's private state (the
results worth querying land in the sweep tables); and a file needs no server, so a search
resumes wherever MBATS_HOME is. A study is named (``--study``, default derived from the
strategy, instruments, granularity, range, costs, grid, ranking metric and seed); re-running with
``--resume`` continues its trial count (trials left RUNNING by a killed process are marked FAIL).

Pruning (``prune``, ``--prune``): a trial's whole score is one compiled pass over the bars, so the
one step where a pruner can save work is between a cheap early score and that full pass. With
pruning on, each new configuration of a batch is first scored on the first half of the bars
(:data:`PRUNE_FRACTION`) and that score is reported to Optuna as the trial's intermediate value
(step 0); Optuna's ``MedianPruner`` then stops a trial whose half-history score is worse than the
median of the completed trials' at the same step (after :data:`PRUNE_STARTUP` completed trials),
and only the survivors are scored on the full history. A pruned trial counts towards ``trials``
(it used its budget), its configuration is not ranked, and a later proposal of it is pruned again
without scoring. The backtrader confirmation (stage 2) only ever sees fully scored
configurations. Pruning needs the compiled scoring core; a grid that falls back to per-process
scoring is searched unpruned (and says so in the notes). It is off by default: it saves bars only
when more than half of the new configurations are pruned (each costs 0.5 + (1 - p) passes), and on
the bench grid it scored more than it saved (bench/RESULTS.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mbats.errors import MbatsError, UsageError
from mbats.research.sweep import (LOWER_IS_BETTER, ConfigScore, Progress, SweepRequest, SweepResult, _log_child,
                                  _log_parent, _pool_for, _record_sweep_end, _record_sweep_start,
                                  _validate, confirm_stage, new_sweep_id, rank_scores, score_stage)

BATCH = 4                # trials asked, then scored together (fixed: the same seed gives the same trials anywhere)
MAX_SPACE = 2**31 - 1    # config_id is a grid position stored as an integer
PRUNE_FRACTION = 0.5     # the early score's share of the bars (from the start of the range)
PRUNE_STARTUP = 2 * BATCH  # completed trials before the pruner may stop one


@dataclass
class SearchRequest:
    sweep: SweepRequest                  # strategy, instruments, grid (the search space), top N, ranking, recording
    trials: int | None = None            # completed trials of the study in all (resumed ones count)
    timeout: float | None = None         # seconds for this call
    seed: int = 0
    study: str | None = None             # default: derived from the request (see study_name)
    resume: bool = False
    prune: bool = False                  # early score on the first half of the bars, MedianPruner (see module doc)


def check_budget(trials: int | None, timeout: float | None) -> None:
    """A usage error unless the search has a positive trial count and/or time budget."""
    if trials is None and timeout is None:
        raise UsageError("--search optuna needs a budget: --trials N and/or --timeout SECONDS")
    if trials is not None and trials < 1:
        raise UsageError(f"--trials must be 1 or more, not {trials}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise UsageError(f"--timeout must be a positive number of seconds, not {timeout}")


# --- the search space -----------------------------------------------------------------------------

def _even_step(values: list) -> float | int | None:
    """The step of an evenly spaced ascending list of numbers (None: not one)."""
    if len(values) < 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return None
    step = values[1] - values[0]
    if step <= 0:
        return None
    for a, b in zip(values, values[1:]):
        if not math.isclose(b - a, step, rel_tol=1e-9, abs_tol=1e-12):
            return None
    return step


def search_space(grid: dict[str, list]) -> dict[str, object]:
    """Optuna distributions of a typed grid (values already coerced to the strategy's types)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, object] = {}
    for name, values in grid.items():
        step = _even_step(values)
        if step is not None and all(isinstance(v, int) for v in values):
            space[name] = IntDistribution(values[0], values[-1], step=step)
        elif step is not None:
            space[name] = FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
        else:
            space[name] = CategoricalDistribution(values)
    return space


def grid_position(grid: dict[str, list], params: dict) -> tuple[int, dict]:
    """The sampled point as the grid's own values and its position in grid order (``expand_grid``)."""
    position, point = 0, {}
    for name, values in grid.items():
        value = params[name]
        if isinstance(value, float) and not isinstance(value, bool):   # a float step: snap to the grid value
            index = min(range(len(values)), key=lambda i: abs(values[i] - value))
        else:
            index = values.index(value)
        position = position * len(values) + index
        point[name] = values[index]
    return position, point


def study_name(req: SearchRequest, strategy: str) -> str:
    """A name that is the same for the same search, so re-running it with --resume finds the study."""
    base = req.sweep.base
    key = json.dumps({"grid": req.sweep.grid, "params": base.params, "rank_by": req.sweep.rank_by, "seed": req.seed,
                      "start": str(base.start), "end": str(base.end), "cash": base.cash,
                      "commission": base.commission, "spread": base.spread_pips, "sizer": base.sizer},
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{strategy}-{'+'.join(base.instruments)}-{base.granularity}-{digest}"


def storage_url() -> str:
    from mbats.config import get_settings

    folder = get_settings().home / "optuna"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'studies.sqlite3'}"


def _open_study(req: SearchRequest, name: str, direction: str, sweep_id: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)   # one line per trial otherwise
    storage = storage_url()
    sampler = optuna.samplers.TPESampler(seed=req.seed, constant_liar=True)   # liar: batches spread out
    exists = name in optuna.get_all_study_names(storage)
    if exists and not req.resume:
        raise UsageError(f"study '{name}' exists (in {storage}); add --resume to continue it, or name another "
                         "with --study")
    if not exists and req.resume:
        raise UsageError(f"no study '{name}' to resume (in {storage})")
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP, n_warmup_steps=0) if req.prune
              else optuna.pruners.NopPruner())   # pruners live in memory: a resumed study takes this call's
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction=direction,
                                load_if_exists=True)
    if not exists:
        study.set_user_attr("sweep_id", sweep_id)
        study.set_user_attr("grid", json.dumps(req.sweep.grid, default=str))
    elif study.user_attrs.get("grid") != json.dumps(req.sweep.grid, default=str):
        raise UsageError(f"study '{name}' searched another grid; resume it with the same --grid")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)   # left by an interrupted call
    return study


def early_bars(bars: dict, fraction: float = PRUNE_FRACTION) -> dict:
    """The first ``fraction`` of the bars' common time range, per instrument (the pruner's early score)."""
    first = min(frame.index[0] for frame in bars.values() if len(frame))
    last = max(frame.index[-1] for frame in bars.values() if len(frame))
    cut = first + (last - first) * fraction
    return {symbol: frame[frame.index < cut] for symbol, frame in bars.items()}


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --- the search -----------------------------------------------------------------------------------

def run_search(req: SearchRequest, bars: dict | None = None, progress: Progress | None = None,
               after_batch: Callable[[int], None] | None = None) -> SweepResult:
    """Search the grid with TPE within the budget, re-run the best ``top`` in backtrader, record, rank.

    ``after_batch(completed)`` is called after each scored batch (tests interrupt a search there).
    """
    import optuna

    from mbats.backtest.runner import load_bars
    from mbats.kernel.signals import has_brackets, has_signals
    from mbats.kernel.strategies import coerce_params, strategy_name
    from mbats.research.sweep import scored_fast

    check_budget(req.trials, req.timeout)
    sweep = req.sweep
    cls = _validate(sweep)
    if not has_signals(cls) and not has_brackets(cls):
        raise UsageError(f"--search optuna needs a strategy with vectorised signals; {strategy_name(cls)} has none "
                         "(use the grid sweep)")
    if not scored_fast(cls, sweep.base):   # a bracket strategy the core cannot model would only run in backtrader
        from mbats.research.core import unsupported

        why = unsupported(cls, [sweep.base])
        raise UsageError(f"--search optuna: the scoring core cannot model this grid ({why}); use the grid sweep")
    grid = {name: [coerce_params(cls, {name: v})[name] for v in values] for name, values in sweep.grid.items()}
    if math.prod(len(v) for v in grid.values()) > MAX_SPACE:
        raise UsageError(f"the search space has more than {MAX_SPACE:,} configurations; narrow the --grid")
    space = search_space(grid)
    name = req.study or study_name(req, strategy_name(cls))
    direction = "minimize" if sweep.rank_by in LOWER_IS_BETTER else "maximize"
    study = _open_study(req, name, direction, sweep.sweep_id or new_sweep_id(strategy_name(cls)))
    sweep_id = study.user_attrs["sweep_id"]
    workers = sweep.workers or os.cpu_count() or 1
    base = replace(sweep.base, run_type="sweep", sweep_id=sweep_id)
    bars_from_db = bars is None
    bars = bars if bars is not None else load_bars(base)
    if sweep.record:
        _record_sweep_start(sweep.grid, base, sweep.rank_by, sweep.top, sweep.tolerance_pct,
                            math.prod(len(v) for v in grid.values()), workers)

    complete, pruned_state = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    scored: dict[int, ConfigScore] = {}
    for trial in study.get_trials(deepcopy=False, states=(complete,)):   # a resumed study's earlier trials
        attrs = trial.user_attrs
        scored.setdefault(attrs["config_id"], ConfigScore(attrs["config_id"], attrs["params"], attrs["metrics"],
                                                          attrs["trades"], attrs["trades_sha256"], attrs["seconds"]))
    pruned: dict[int, float] = {t.user_attrs["config_id"]: t.intermediate_values.get(0, math.nan)
                                for t in study.get_trials(deepcopy=False, states=(pruned_state,))}
    early: dict[int, float | None] = {}   # config_id -> early (half-history) score
    done = len(study.get_trials(deepcopy=False, states=(complete, pruned_state)))
    started = time.perf_counter()
    from mbats.research.core import engine_name

    scoring_seconds, engine, notes = 0.0, engine_name(), []   # engine_name: a resumed search may score nothing new
    short = None
    if req.prune:
        from mbats.research.core import unsupported

        why = unsupported(cls, [base])
        if why is None:
            short = early_bars(bars)
        else:
            notes.append(f"pruning off: the scoring core cannot model this grid ({why})")
    asked, most = 0, 4 * req.trials + 100 if req.trials else math.inf   # trials without a score do not count
    with _pool_for(workers, bars) as pool:
        while (req.trials is None or done < req.trials) and asked < most and \
                (req.timeout is None or time.perf_counter() - started < req.timeout):
            batch = [study.ask(space) for _ in range(min(BATCH, (req.trials or done + BATCH) - done))]
            asked += len(batch)
            told: set[int] = set()
            try:
                points = [grid_position(grid, t.params) for t in batch]
                new_points = {pos: point for pos, point in points
                              if pos not in scored and (short is None or pos not in pruned)}
                if short is not None:   # the pruning step: early score, report, maybe stop before the full pass
                    first = {pos: point for pos, point in new_points.items() if pos not in early}
                    if first:
                        specs = [replace(base, params=coerce_params(cls, dict(base.params) | p))
                                 for p in first.values()]
                        tick = time.perf_counter()
                        halves, _, _ = score_stage(cls, specs, short, workers, pool)
                        scoring_seconds += time.perf_counter() - tick
                        early.update((pos, s.metrics.get(sweep.rank_by)) for pos, s in zip(first, halves))
                    for trial, (pos, _) in zip(batch, points):
                        if pos in scored:
                            continue
                        if pos not in pruned and _finite(early.get(pos)):
                            trial.report(float(early[pos]), step=0)
                            if trial.should_prune():
                                pruned[pos] = float(early[pos])
                        if pos in pruned:   # now or by an earlier trial: not scored on the full history
                            trial.set_user_attr("config_id", pos)
                            study.tell(trial, state=pruned_state)
                            done += 1
                            told.add(trial.number)
                fresh = {pos: point for pos, point in new_points.items() if short is None or pos not in pruned}
                if fresh:
                    specs = [replace(base, params=coerce_params(cls, dict(base.params) | p)) for p in fresh.values()]
                    tick = time.perf_counter()
                    new, engine, notes_now = score_stage(cls, specs, bars, workers, pool)
                    notes = [*notes, *(n for n in notes_now if n not in notes)]
                    scoring_seconds += time.perf_counter() - tick
                    for pos, s in zip(fresh, new):
                        s.config_id, s.params = pos, fresh[pos]
                        scored[pos] = s
                for trial, (pos, _) in zip(batch, points):
                    if trial.number in told:
                        continue
                    s = scored[pos]
                    for key, value in (("config_id", pos), ("params", s.params), ("metrics", s.metrics),
                                       ("trades", s.trades), ("trades_sha256", s.trades_sha256),
                                       ("seconds", s.seconds)):
                        trial.set_user_attr(key, value)
                    value = s.metrics.get(sweep.rank_by)
                    if not _finite(value):
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)   # no score to rank by
                    else:
                        study.tell(trial, float(value))
                        done += 1
                    told.add(trial.number)
            except BaseException:
                for trial in batch:   # interrupted: asked trials are not left RUNNING
                    if trial.number not in told:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            if progress:
                progress("optuna trials", done, req.trials or done)
            if after_batch:
                after_batch(done)
        scores = list(scored.values())
        if not scores:
            raise MbatsError(f"study '{name}': no trial has a {sweep.rank_by} score (budget too small?)")
        rank_scores(scores, sweep.rank_by)
        tick = time.perf_counter()
        confirm_stage(pool, cls, [(s, replace(base, params=coerce_params(cls, dict(base.params) | s.params)))
                                  for s in scores[:sweep.top]], sweep.record, sweep.tolerance_pct, progress)
        backtrader_seconds = time.perf_counter() - tick
    trials_total = len(study.trials)
    n_pruned = len(study.get_trials(deepcopy=False, states=(pruned_state,)))
    pruned_note = f", {n_pruned} pruned on the first half of the bars" if n_pruned else ""
    notes = [*notes, f"optuna TPE (seed {req.seed}) study '{name}': {done} completed trials "
                     f"({trials_total} in all{pruned_note}), "
                     f"{len(scores)} distinct configurations scored of "
                     f"{math.prod(len(v) for v in grid.values()):,}; storage {storage_url()}"]
    result = SweepResult(sweep_id, strategy_name(cls), sweep.rank_by, sweep.tolerance_pct, scores, workers,
                         scoring_seconds, backtrader_seconds, engine=engine, notes=notes)
    if sweep.record and bars_from_db:
        from mbats.research.sweep import _record_sources

        _record_sources(base, [s.run_id for s in scores if s.run_id is not None])
    if sweep.track and sweep.record:
        specs_by_id = {s.config_id: replace(base, params=coerce_params(cls, dict(base.params) | s.params))
                       for s in result.rerun}
        for s in result.rerun:
            s.mlflow_run_id = _log_child(specs_by_id[s.config_id], s, strategy_name(cls))
        result.mlflow_run_id = _log_parent(result, sweep.grid, sweep.base.instruments, sweep.top)
        _log_search(result.mlflow_run_id, req, name, done)
    if sweep.record:
        _record_sweep_end(result)
    return result


def _log_search(parent: str, req: SearchRequest, name: str, done: int) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in (("search", "optuna-tpe"), ("seed", req.seed), ("study", name), ("trials_budget", req.trials),
                       ("timeout_s", req.timeout), ("prune", req.prune)):
        client.log_param(parent, key, value)
    client.log_metric(parent, "trials_completed", done)


