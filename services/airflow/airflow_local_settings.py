"""Airflow imports this module at start in every component (env.sh puts services/airflow on PYTHONPATH).

In the components that fork task processes — the scheduler with the LocalExecutor, Celery workers
(both MBATS worker roles) — it imports MBATS' sweep and backtest code once, before the forks: a
forked task then starts with pandas, backtrader and the research code already loaded instead of
importing them itself (bench/bench_dag_sweep.py measures it). The API server, DAG processor and
triggerer import nothing extra. ``MBATS_AIRFLOW_PRELOAD`` (a setting) lists the modules, comma
separated; empty turns it off. A module that fails to import is logged and skipped: tasks import it again.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys


def _forks_tasks() -> bool:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if args[:2] == ["celery", "worker"]:
        return True
    return args[:1] == ["scheduler"] and "Local" in os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")


def _preload() -> None:
    if not _forks_tasks():
        return
    try:
        from mbats.config import Settings

        modules = Settings().airflow_preload
    except Exception as exc:  # noqa: BLE001 - e.g. an invalid setting: the task reports it, not the scheduler
        logging.getLogger(__name__).warning("no preload: %s", exc)
        return
    for name in filter(None, (m.strip() for m in modules.split(","))):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a preload is an optimisation, never a reason not to start
            logging.getLogger(__name__).warning("preloading %s failed: %s", name, exc)


_preload()
