"""Every DAG file parses, with the expected DAGs and tasks; deployments drive the live DAGs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pendulum

from af_helpers import BIN, DAGS, EXPECTED_DAGS


def test_dagbag_has_no_import_errors_and_expected_dags(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED_DAGS)
    for dag_id, tasks in EXPECTED_DAGS.items():
        assert {t.task_id for t in dagbag.dags[dag_id].tasks} == tasks, dag_id


def test_dag_shapes(dagbag):
    sweep = dagbag.dags["backtest_sweep"]
    assert type(sweep.timetable).__name__ == "NullTimetable"  # triggered with conf only
    score = sweep.get_task("score_chunk")
    assert score.queue == "strategy_runner"  # the strategy-runner Celery queue
    assert score.map_index_template == "{{ mbats_label }}"
    assert sweep.get_task("confirm").trigger_rule == "all_done"
    assert {sweep.get_task(t).queue for t in ("prepare", "confirm")} == {"strategy_runner"}  # they write the risk DB

    minute = dagbag.dags["market_data_minute"]
    # a fixed data interval per run (the hour that ended at the fire time); unpausing starts no past run
    assert type(minute.timetable).__name__ == "FutureCronTrigger"
    assert (minute.timetable.expression, minute.timetable.infer_manual_data_interval(
        run_after=pendulum.datetime(2026, 1, 5, 10, 37)).start) == ("0 * * * *", pendulum.datetime(2026, 1, 5, 9))
    assert minute.get_task("data_quality").trigger_rule == "all_done"  # runs even when an instrument failed
    assert minute.get_task("download").upstream_task_ids == {"instruments"}

    live = dagbag.dags["live_sma_eurusd_paper"]
    assert live.max_active_runs == 1
    assert live.get_task("trade_session").queue == "strategy_runner"
    assert live.get_task("trade_session").execution_timeout.total_seconds() == (9 * 60 + 15) * 60
    assert (live.timetable.expression, str(live.timetable.timezone)) == ("0 7 * * 1-5", "Europe/London")
    assert "ml_gbpusd_paper" not in str(dagbag.dag_ids)  # disabled in the deployments file


def _parse_with(deployments_text: str, tmp_path) -> dict:
    """Parse dags/ in a fresh interpreter with another deployments file; {dag_ids, import_errors}."""
    path = tmp_path / "deployments.yaml"
    path.write_text(textwrap.dedent(deployments_text))
    code = ("import json; from airflow.models import DagBag; b = DagBag(dag_folder=%r); "
            "print('RESULT=' + json.dumps({'dags': sorted(b.dag_ids), 'errors': b.import_errors}))" % str(DAGS))
    env = os.environ | {"MBATS_DEPLOYMENTS_FILE": str(path)}
    out = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT=")]
    assert line, out.stderr[-2000:]
    import json

    return json.loads(line[0][len("RESULT="):])


GOOD = """
deployments:
  - name: a_paper
    strategy: sma_crossover
    instruments: [EUR_USD]
    mode: paper
    schedule: "0 7 * * 1-5"
    session: {start: "07:00", end: "16:00", timezone: Europe/London}
  - name: b_live
    strategy: rsi_atr
    instruments: [USD_JPY, EUR_USD]
    mode: live
    account: "${MBATS_OANDA_ACCOUNT_ID}"
    schedule: "0 22 * * 0-4"
    session: {start: "22:00", end: "06:00", timezone: UTC}
  - name: c_off
    strategy: sma_crossover
    instruments: [EUR_USD]
    mode: paper
    schedule: "@daily"
    session: {start: "00:00", end: "23:00"}
    enabled: false
"""


def test_adding_and_disabling_deployments_adds_and_removes_dags(tmp_path):
    parsed = _parse_with(GOOD, tmp_path)
    assert parsed["errors"] == {}
    live = [d for d in parsed["dags"] if d.startswith("live_")]
    assert live == ["live_a_paper", "live_b_live"]  # c_off is disabled


def test_broken_deployments_file_is_an_import_error_naming_the_problem(tmp_path):
    broken = GOOD.replace("mode: live", "mode: production")
    parsed = _parse_with(broken, tmp_path)
    errors = parsed["errors"]
    assert list(errors) == [str(DAGS / "live.py")] or list(errors) == ["dags/live.py"] or \
        [k for k in errors if k.endswith("live.py")] == list(errors)
    message = next(iter(errors.values()))
    assert "DeploymentsError" in message
    assert "deployment 'b_live'" in message and "mode must be one of" in message
    # the other DAG files still load
    assert {"backtest_sweep", "eod_risk", "market_data_minute"} <= set(parsed["dags"])
    assert not [d for d in parsed["dags"] if d.startswith("live_")]


def test_invalid_yaml_is_an_import_error(tmp_path):
    parsed = _parse_with("deployments: [\n  - name: x\n  strategy", tmp_path)
    message = "".join(parsed["errors"].values())
    assert "not valid YAML" in message and "deployments.yaml" in message
