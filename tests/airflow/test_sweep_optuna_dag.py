"""The ``backtest_sweep`` DAG in optuna mode (conf ``search: optuna``): the same library search as
``mbats sweep --search optuna``, run whole in ``confirm`` (nothing mapped), recorded like a grid sweep."""

from __future__ import annotations

import uuid

import pytest


def _states(dr) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


@pytest.fixture
def sweep_dag(airflow_env):
    """A freshly parsed backtest_sweep: dag.test() leaves a run's conf in the task params of the DAG
    object it ran, so a shared DagBag would hand this test's optuna settings to later runs."""
    from af_helpers import DAGS
    from airflow.models import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["backtest_sweep"]


def test_optuna_mode_searches_within_the_budget_and_records_the_sweep(sweep_dag, airflow_db, samples_loaded):
    import optuna

    from mbats.db import connect
    from mbats.research.search import storage_url
    from mbats.risk.store import list_runs

    sweep_id = f"dagoptuna-{uuid.uuid4().hex[:8]}"
    study = f"study-{sweep_id}"
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
            "start": "2017-06-01", "end": "2018-01-01", "grid": {"fast": [5, 10, 15, 20]},
            "ranges": {"slow": {"start": 30, "stop": 90, "step": 20}}, "metric": "sharpe", "top": 2,
            "sweep_id": sweep_id, "search": "optuna", "trials": 8, "seed": 3, "study": study, "prune": True}
    dr = sweep_dag.test(run_conf=conf)
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states["confirm"] == ["success"]
    assert set(states.get("score_chunk", ["skipped"])) <= {"skipped"}   # TPE's batches are not mapped
    summary = next(ti for ti in dr.get_task_instances() if ti.task_id == "confirm").xcom_pull(task_ids="confirm")
    assert summary["search"] == "optuna" and summary["sweep_id"] == sweep_id
    assert any(f"optuna TPE (seed 3) study '{study}': 8 completed trials" in note for note in summary["notes"])
    assert 1 <= summary["configs"] <= 8 and len(summary["best"]) == 2      # of a 16-configuration grid
    assert summary["disagreements"] == [] and all(b["agrees"] for b in summary["best"])

    trials = optuna.load_study(study_name=study, storage=storage_url()).trials
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 8
    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, configs FROM sweeps WHERE sweep_id = %s", (sweep_id,))
            assert cur.fetchone() == ("finished", 16)
            cur.execute("SELECT count(*) FROM sweep_scores WHERE sweep_id = %s", (sweep_id,))
            assert cur.fetchone()[0] == summary["configs"]
        runs = list_runs(conn, sweep_id=sweep_id)
    finally:
        conn.close()
    assert sorted(r["id"] for r in runs) == sorted(b["run_id"] for b in summary["best"])
    assert all(r["mlflow_run_id"] for r in runs)


def test_optuna_mode_without_a_budget_fails_in_prepare(sweep_dag, airflow_db, samples_loaded):
    dr = sweep_dag.test(run_conf={"strategy": "sma_crossover", "instruments": ["EUR_USD"],
                                                      "grid": {"fast": [5, 10]}, "search": "optuna"})
    states = _states(dr)
    assert str(dr.state) == "failed" and states["prepare"] == ["failed"]
    assert set(states.get("confirm", ["upstream_failed"])) <= {"upstream_failed", "failed"}   # nothing searched


def test_a_grid_sweep_refuses_optuna_settings():
    from mbats.orchestration.sweep import SweepConfError, normalize_conf

    with pytest.raises(SweepConfError, match="conf.trials apply to search optuna only"):
        normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD"], "grid": {"fast": [5]},
                        "trials": 10})
    with pytest.raises(SweepConfError, match="needs a budget: conf.trials N and/or conf.timeout"):
        normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD"], "grid": {"fast": [5]},
                        "search": "optuna"})
    conf = normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD"], "grid": {"fast": [5]},
                           "search": "optuna", "timeout": 30})
    assert (conf["search"], conf["trials"], conf["timeout"], conf["seed"], conf["prune"]) == \
        ("optuna", None, 30.0, 0, False)
