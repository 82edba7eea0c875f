"""The schedule of MBATS' cron DAGs: a cron trigger that never starts a run for a time already past.

Airflow's cron timetables with ``catchup=False`` still schedule the *latest* past fire the
moment a DAG is unpaused. The DAGs start paused, and the UI's Trigger dialog unpauses them
("unpause on trigger"): the user got the manual run plus a scheduled run for the same interval,
with the manual one queued behind it (``max_active_runs=1``). :class:`FutureCronTrigger` only
schedules fires after "now": unpausing starts nothing by itself, the next run is the next cron
time. With ``interval`` set, a run's data interval is ``[fire - interval, fire)`` and a manual
run gets the latest complete interval (so the market-data DAGs load whole hours/days as before).

This module imports Airflow: only Airflow loads it (registered by :mod:`.airflow_plugin`).
"""

from __future__ import annotations

import datetime

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable
from airflow._shared.timezones.timezone import coerce_datetime, utcnow


class FutureCronTrigger(CronTriggerTimetable):
    """``CronTriggerTimetable`` without the run for the latest past fire when ``catchup=False``."""

    @property
    def expression(self) -> str:  # as on the SDK's CronTriggerTimetable
        return self._expression

    @property
    def timezone(self):
        return self._timezone

    def next_dagrun_info(self, *, last_automated_data_interval: DataInterval | None,
                         restriction: TimeRestriction) -> DagRunInfo | None:
        if restriction.catchup:
            return super().next_dagrun_info(last_automated_data_interval=last_automated_data_interval,
                                            restriction=restriction)
        candidates = [self._align_to_next(coerce_datetime(utcnow()))]
        if last_automated_data_interval is not None:
            candidates.append(self._get_next(last_automated_data_interval.end))
        if restriction.earliest is not None:
            candidates.append(self._align_to_next(restriction.earliest))
        start = max(candidates)
        if restriction.latest is not None and restriction.latest < start:
            return None
        return DagRunInfo.interval(coerce_datetime(start - self._interval), start)

    def infer_manual_data_interval(self, *, run_after) -> DataInterval:
        """A manual run covers the latest complete interval (an interval of 0: the trigger time)."""
        if not self._interval:
            return super().infer_manual_data_interval(run_after=run_after)
        end = self._align_to_prev(coerce_datetime(run_after))
        return DataInterval(coerce_datetime(end - self._interval), end)


def future_cron(cron: str, timezone: str = "UTC",
                interval: datetime.timedelta = datetime.timedelta(0)) -> FutureCronTrigger:
    return FutureCronTrigger(cron, timezone=timezone, interval=interval)
