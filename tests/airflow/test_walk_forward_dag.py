"""The ``walk_forward`` DAG: thin (two library calls), and a ``dag.test()`` run over the sample data
records the walk-forward in the risk DB and MLflow."""

from __future__ import annotations

import uuid


def _states(dr) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def test_walk_forward_dag_shape(dagbag):
    assert "walk_forward" in dagbag.dag_ids and not dagbag.import_errors
    dag = dagbag.dags["walk_forward"]
    assert {t.task_id for t in dag.tasks} == {"prepare", "run"}
    assert dag.get_task("run").upstream_task_ids == {"prepare"}
    assert {dag.get_task(t).queue for t in ("prepare", "run")} == {"strategy_runner"}   # they write the risk DB
    assert type(dag.timetable).__name__ == "NullTimetable"


def test_walk_forward_dag_records_windows_equity_and_mlflow(dagbag, airflow_db, samples_loaded):
    from mbats.db import connect

    wf_id = f"wf-dagtest-{uuid.uuid4().hex[:8]}"
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
            "start": "2017-05-01", "end": "2018-01-01", "grid": {"fast": [5, 10]},
            "ranges": {"slow": {"start": 30, "stop": 60, "step": 30}}, "train": "60D", "test": "30D",
            "anchored": True, "spread_pips": 1.0, "wf_id": wf_id}
    dr = dagbag.dags["walk_forward"].test(run_conf=conf)
    assert str(dr.state) == "success", _states(dr)
    summary = next(ti for ti in dr.get_task_instances() if ti.task_id == "run").xcom_pull(task_ids="run")
    assert summary["wf_id"] == wf_id and summary["windows"] >= 4 and summary["degradation"] is not None

    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, windows, anchored, mlflow_run_id FROM walk_forwards WHERE wf_id = %s", (wf_id,))
            status, windows, anchored, mlflow_run_id = cur.fetchone()
            cur.execute("SELECT count(DISTINCT train_start), count(*) FROM walk_forward_windows WHERE wf_id = %s",
                        (wf_id,))
            train_starts, rows = cur.fetchone()
            cur.execute("SELECT count(*) FROM walk_forward_equity WHERE wf_id = %s AND instrument = 'ALL'", (wf_id,))
            points = cur.fetchone()[0]
    finally:
        conn.close()
    assert status == "finished" and anchored and windows == rows == summary["windows"]
    assert train_starts == 1 and points > 0 and mlflow_run_id == summary["mlflow_run_id"]


def test_walk_forward_dag_rejects_a_bad_conf_in_prepare(dagbag, airflow_db, samples_loaded):
    dr = dagbag.dags["walk_forward"].test(run_conf={"strategy": "sma_crossover", "instruments": ["EUR_USD"],
                                                    "grid": {"fast": [5]}, "train": "soon", "test": "30D"})
    states = _states(dr)
    assert str(dr.state) == "failed" and states["prepare"] == ["failed"]
    assert states.get("run", ["upstream_failed"]) == ["upstream_failed"]
