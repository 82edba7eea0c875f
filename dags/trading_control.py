"""``trading_control``: status, stop or flatten of a running paper/live session, from the Airflow UI.

Trigger with conf, e.g. ``{"command": "status"}``, ``{"command": "stop", "run_id": 42}`` or
``{"command": "flatten", "run_id": 42}`` (the session closes its positions and stops). Flatten
without a run id closes the account's positions directly at the venue and needs
``"confirm_venue_flatten": true``. The same as ``mbats live status|stop|flatten``
(:func:`mbats.live.control.act`): the request is a row in the risk DB the session polls, so it
reaches a runner on any worker.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from mbats.alerts import airflow_failure_callback


@dag(
    dag_id="trading_control",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mbats", "live"],
    doc_md=__doc__,
    default_args={"on_failure_callback": airflow_failure_callback},
    params={
        "command": Param("status", enum=["status", "stop", "flatten"]),
        "run_id": Param(None, type=["null", "integer"], description="run id of the session (see status)"),
        "wait": Param(120, type="number", minimum=0, description="seconds to wait for the session to end"),
        "confirm_venue_flatten": Param(False, type="boolean",
                                       description="flatten with no run id: close the account at the venue"),
    },
)
def trading_control():
    @task
    def act() -> dict | list:
        from mbats.live.control import act

        p = get_current_context()["params"]
        result = act(p["command"], p.get("run_id"), float(p["wait"]), bool(p["confirm_venue_flatten"]))
        print(result)
        return result

    act()


trading_control()
