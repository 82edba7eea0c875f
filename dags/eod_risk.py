"""``eod_risk``: end-of-day risk of open paper/live positions and recent runs.

Historical VaR/CVaR (95/99 %, 1 day), exposure by currency (USD), stress tests with historical
FX shocks, and VaR of recent runs' equity, written to the ``eod_risk`` table of the risk DB
(see :mod:`mbats.risk.eod`). Runs after the New York close; re-running a day replaces its rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from mbats.orchestration import strategy_queue


@dag(
    dag_id="eod_risk",
    schedule=CronTriggerTimetable("15 17 * * 1-5", timezone="America/New_York"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mbats", "risk"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "as_of": Param(None, type=["null", "string"], description="business day (ISO date); default: the run's day"),
        "modes": Param(["paper", "live"], type="array", items={"type": "string"},
                       description="run modes whose open positions make the portfolio"),
        "run_ids": Param(None, type=["null", "array"], items={"type": "integer"},
                         description="use exactly these runs' positions instead"),
        "lookback_days": Param(500, type="integer", minimum=2),
        "recent_days": Param(7, type="integer", minimum=0),
    },
)
def eod_risk():
    # writes the risk DB: on the strategy runners (the default queue's workers load bars only)
    @task(queue=strategy_queue())
    def compute_eod_risk() -> dict:
        from mbats.risk.eod import run_eod

        ctx = get_current_context()
        p = ctx["params"]
        when = ctx.get("logical_date") or ctx.get("run_after") or datetime.now(timezone.utc)
        as_of = p.get("as_of") or when.astimezone(ZoneInfo("America/New_York")).date()
        summary = run_eod(as_of, modes=tuple(p["modes"]), run_ids=p.get("run_ids"),
                          lookback_days=p["lookback_days"], recent_days=p["recent_days"])
        print(summary)
        return summary

    compute_eod_risk()


eod_risk()
