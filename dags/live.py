"""``live_<deployment>``: one DAG per enabled deployment in ``strategies/deployments.yaml``.

Each scheduled run trades the deployment's session window and ends; a retry resumes through the
live runner's reconciliation with the broker. Adding a deployment (or enabling it) adds its DAG
on the next parse, disabling or removing it removes the DAG. A broken deployments file raises
here, so Airflow lists an import error naming the file and the entry instead of silently
dropping DAGs.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from mbats.alerts import airflow_failure_callback
from mbats.orchestration import strategy_queue
from mbats.orchestration.timetables import future_cron
from mbats.orchestration.deployments import Deployment, load_deployments


def _session_length(dep: Deployment) -> timedelta:
    start, end = dep.session.window(datetime(2026, 1, 5, 12, tzinfo=timezone.utc))
    return end - start


def build(dep: Deployment):
    @dag(
        dag_id=dep.dag_id,
        schedule=future_cron(dep.schedule, dep.session.timezone),  # unpausing starts no session already past
        start_date=datetime(2020, 1, 1),  # catchup is off; an early start lets replays of past sessions run
        catchup=False,
        max_active_runs=1,  # never two sessions of one deployment at once
        tags=["mbats", "live", dep.mode, dep.strategy],
        doc_md=(f"**{dep.mode}** trading of `{dep.strategy}` on {', '.join(dep.instruments)} "
                f"({dep.granularity}), session {dep.session.start:%H:%M}–{dep.session.end:%H:%M} "
                f"{dep.session.timezone}, schedule `{dep.schedule}`.\n\n{dep.description}\n\n"
                f"Deployment: `{dep.as_dict()}`"),
        default_args={"retries": 3, "retry_delay": timedelta(minutes=1),
                      "on_failure_callback": airflow_failure_callback},
    )
    def live():
        @task
        def preflight() -> dict:
            """Check the strategy exists and the account resolves before the session starts."""
            from mbats.kernel.strategies import coerce_params, find_strategy

            coerce_params(find_strategy(dep.strategy), dep.params)
            return {"deployment": dep.name, "account_set": dep.resolved_account() is not None}

        @task(queue=strategy_queue(), execution_timeout=_session_length(dep) + timedelta(minutes=15))
        def trade_session() -> dict:
            """Trade until the end of the session window, then stop (a retry resumes safely)."""
            from mbats.orchestration.live import LiveRunnerUnavailable, run_session

            ctx = get_current_context()
            try:
                return run_session(dep, ctx.get("logical_date") or ctx.get("run_after"))
            except LiveRunnerUnavailable as exc:  # retrying cannot help
                raise AirflowFailException(str(exc)) from exc

        preflight() >> trade_session()

    return live()


for _dep in load_deployments():
    globals()[_dep.dag_id] = build(_dep)
