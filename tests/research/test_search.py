"""`--search optuna`: TPE over the sweep's grid, seeded, resumable, recorded like a grid sweep."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import optuna
import pytest

from mbats.backtest.runner import BacktestSpec
from mbats.errors import UsageError
from mbats.research.grid import expand_grid
from mbats.research.search import SearchRequest, check_budget, grid_position, run_search, search_space, storage_url
from mbats.research.sweep import SweepRequest

GRID = {"fast": [5, 10, 15, 20, 25], "slow": [40, 60, 80, 120]}   # 20 configurations


def _request(study: str, trials: int, *, seed: int = 7, record: bool = False, resume: bool = False) -> SearchRequest:
    base = BacktestSpec("sma_crossover", ["EUR_USD"], "H1", spread_pips=1.0, commission=0.00002)
    sweep = SweepRequest(base, GRID, top=2, rank_by="sharpe", workers=1, track=record, record=record)
    return SearchRequest(sweep, trials=trials, seed=seed, study=study, resume=resume)


def _trials(study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage_url()).trials


def test_grid_values_become_distributions_and_every_point_keeps_its_grid_position():
    grid = {"fast": [5, 10, 15], "slow": [30, 70, 80], "allow_short": [True, False], "x": [0.1, 0.2, 0.3]}
    space = search_space(grid)
    assert space["fast"] == optuna.distributions.IntDistribution(5, 15, step=5)
    assert space["x"] == optuna.distributions.FloatDistribution(0.1, 0.3, step=0.1)
    assert isinstance(space["slow"], optuna.distributions.CategoricalDistribution)        # uneven: a choice
    assert isinstance(space["allow_short"], optuna.distributions.CategoricalDistribution)
    for position, point in enumerate(expand_grid(grid)):
        sampled = dict(point, x=point["x"] + 1e-12)          # a float step samples near, not at, the grid value
        assert grid_position(grid, sampled) == (position, point)


@pytest.mark.parametrize(("trials", "timeout", "message"), [
    (None, None, "needs a budget"), (0, None, "--trials must be 1 or more"), (-3, None, "--trials"),
    (None, 0.0, "--timeout must be a positive"), (5, float("nan"), "--timeout"), (None, -1.0, "--timeout")])
def test_a_search_without_a_usable_budget_is_refused(trials, timeout, message):
    with pytest.raises(UsageError, match=message):
        check_budget(trials, timeout)


def test_the_same_seed_gives_the_same_trials(eurusd_h1):
    bars = {"EUR_USD": eurusd_h1}
    first = run_search(_request("seeded-a", 10), bars=bars)
    second = run_search(_request("seeded-b", 10), bars=bars)
    other = run_search(_request("seeded-c", 10, seed=8), bars=bars)
    sequence = lambda study: [t.params for t in _trials(study)]  # noqa: E731
    assert sequence("seeded-a") == sequence("seeded-b") and len(sequence("seeded-a")) == 10
    assert sequence("seeded-c") != sequence("seeded-a")
    assert [s.params for s in first.scores] == [s.params for s in second.scores]
    assert first.scores[0].metrics["sharpe"] == second.scores[0].metrics["sharpe"]
    assert other.scores                                 # a different seed still finds a ranked result


def test_an_interrupted_search_resumes_its_trial_count_and_lands_in_the_sweep_tables(eurusd_h1, risk_conn):
    bars = {"EUR_USD": eurusd_h1}

    def interrupt(done: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(_request("resumed", 12, record=True), bars=bars, after_batch=interrupt)
    before = _trials("resumed")
    assert [t.state for t in before] == [optuna.trial.TrialState.COMPLETE] * 4
    with pytest.raises(UsageError, match="add --resume"):
        run_search(_request("resumed", 12, record=True), bars=bars)

    result = run_search(_request("resumed", 12, record=True, resume=True), bars=bars)
    after = _trials("resumed")
    assert [t.number for t in after] == list(range(12))                     # the count continued, no gaps or repeats
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in after)
    assert [t.params for t in after[:4]] == [t.params for t in before]      # the first part is kept as it was
    distinct = {t.user_attrs["config_id"] for t in after}
    assert len(result.scores) == len(distinct) and len({s.config_id for s in result.scores}) == len(distinct)
    assert len(result.rerun) == 2 and all(s.agrees for s in result.rerun), [s.difference for s in result.rerun]
    for s in result.scores:                                                  # config_id is the grid position
        assert expand_grid(GRID)[s.config_id] == s.params

    with risk_conn.cursor() as cur:
        cur.execute("SELECT status, configs, mlflow_run_id FROM sweeps WHERE sweep_id = %s", (result.sweep_id,))
        status, configs, parent = cur.fetchone()
        cur.execute("SELECT config_id, rank, run_id, agrees FROM sweep_scores WHERE sweep_id = %s ORDER BY rank",
                    (result.sweep_id,))
        rows = cur.fetchall()
    assert (status, configs) == ("finished", 20)
    assert sorted(r[0] for r in rows) == sorted(distinct)                    # one row per configuration scored
    assert [r[1] for r in rows] == list(range(1, len(distinct) + 1))
    assert all(r[2] is not None and r[3] for r in rows[:2]) and all(r[2] is None for r in rows[2:])

    import mlflow

    client = mlflow.MlflowClient()
    assert parent == result.mlflow_run_id
    assert client.get_run(parent).data.params["search"] == "optuna-tpe"
    assert client.get_run(result.rerun[0].mlflow_run_id).data.tags["mlflow.parentRunId"] == parent


WIDE_GRID = {"fast": list(range(2, 32, 2)), "slow": list(range(40, 220, 20))}   # 135 configurations


def _pruned_request(study: str, trials: int) -> SearchRequest:
    req = _request(study, trials)
    return replace(req, sweep=replace(req.sweep, grid=WIDE_GRID), prune=True)


def test_pruning_stops_trials_on_their_first_half_score_before_the_full_pass(eurusd_h1):
    """--prune: a new configuration is scored on the first half of the bars; Optuna's MedianPruner
    stops it there when that score is below the median of the completed trials' (earlier batches),
    and a stopped configuration is never scored on the full history, nor ranked, nor re-run."""
    from mbats.kernel.strategies import find_strategy
    from mbats.research.search import BATCH, PRUNE_STARTUP, early_bars
    from mbats.research.sweep import score_stage

    bars = {"EUR_USD": eurusd_h1}
    result = run_search(_pruned_request("pruned-a", 32), bars=bars)
    trials = _trials("pruned-a")
    states = optuna.trial.TrialState
    pruned = [t for t in trials if t.state == states.PRUNED]
    complete = [t for t in trials if t.state == states.COMPLETE]
    assert pruned and len(pruned) + len(complete) == 32
    assert {t.user_attrs["config_id"] for t in pruned}.isdisjoint({s.config_id for s in result.scores})
    assert {t.user_attrs["config_id"] for t in complete} == {s.config_id for s in result.scores}
    assert any("pruned on the first half of the bars" in note for note in result.notes)
    for t in pruned:
        if 0 not in t.intermediate_values:   # proposed again after an earlier trial stopped it
            assert t.user_attrs["config_id"] in {p.user_attrs["config_id"] for p in pruned if p.number < t.number}
            continue
        batch_start = t.number - t.number % BATCH
        earlier = [c.intermediate_values[0] for c in complete if c.number < batch_start and 0 in c.intermediate_values]
        assert len([c for c in complete if c.number < batch_start]) >= PRUNE_STARTUP
        assert t.intermediate_values[0] < np.median(earlier)   # below the median: MedianPruner's rule
    # the early score is the configuration's score on the first half of the bars, by the same engine
    first = next(t for t in pruned if 0 in t.intermediate_values)
    spec = replace(_request("x", 1).sweep.base, params=dict(first.params))
    [half], _, _ = score_stage(find_strategy("sma_crossover"), [spec], early_bars(bars), 1, None)
    assert half.metrics["sharpe"] == pytest.approx(first.intermediate_values[0])
    # reproducible: the same seed prunes the same trials
    run_search(_pruned_request("pruned-b", 32), bars=bars)
    assert [(t.params, t.state) for t in _trials("pruned-b")] == [(t.params, t.state) for t in trials]
