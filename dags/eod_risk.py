"""``eod_risk``: end-of-day risk of open paper/live positions and recent runs.

Historical VaR/CVaR (95/99 %, 1 day), exposure by currency (USD), stress tests with historical
FX shocks, and VaR of recent runs' equity, written to the ``eod_risk`` table of the risk DB
(see :mod:`mbats.risk.eod`). Runs after the New York close; re-running a day replaces its rows.
Then ``daily_summary`` sends the paper/live day (fills, P&L, risk events, failures, kill switches,
the VaR just computed) to ``MBATS_ALERT_URLS`` (:func:`mbats.alerts.send_daily_summary`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from airflow.sdk import Param, dag, get_current_context, task

from mbats.alerts import airflow_failure_callback
from mbats.orchestration import strategy_queue
from mbats.orchestration.timetables import future_cron


@dag(
    dag_id="eod_risk",
    schedule=future_cron("15 17 * * 1-5", "America/New_York"),  # unpausing starts no run for a past day
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mbats", "risk"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5), "on_failure_callback": airflow_failure_callback},
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
        return {**summary, "as_of": str(as_of)}

    @task(trigger_rule="all_done")
    def daily_summary(eod: dict | None) -> dict:
        """The day's alert summary (sent to MBATS_ALERT_URLS; never fails the run for a receiver)."""
        from datetime import date

        from mbats.alerts import send_daily_summary

        day = date.fromisoformat(eod["as_of"]) if eod and eod.get("as_of") else None
        summary = send_daily_summary(day)
        print({k: summary[k] for k in ("day", "fills", "realised_pnl", "risk_events", "sent")})
        return summary

    daily_summary(compute_eod_risk())


eod_risk()
