"""The Airflow plugin of MBATS (entry point ``airflow.plugins``): registers :class:`FutureCronTrigger`
so the scheduler and API server can read DAGs scheduled with it."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mbats.orchestration.timetables import FutureCronTrigger


class MbatsPlugin(AirflowPlugin):
    name = "mbats"
    timetables = [FutureCronTrigger]
