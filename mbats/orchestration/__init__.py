"""Helpers the Airflow DAGs call: deployments file, market-data intervals, sweeps, live sessions.

The DAGs in ``dags/`` stay thin: every task is one call into this package (or another part of
``mbats``), so the same work runs from the CLI, a notebook or a test without Airflow.
Nothing here imports Airflow.
"""

import os

STRATEGY_QUEUE_ENV = "MBATS_STRATEGY_QUEUE"
DEFAULT_STRATEGY_QUEUE = "strategy_runner"


def strategy_queue() -> str:
    """The Celery queue served by the strategy-runner workers (backtests, sweep configs, live sessions).

    With the LocalExecutor the queue is ignored and everything runs locally.
    """
    return os.environ.get(STRATEGY_QUEUE_ENV, DEFAULT_STRATEGY_QUEUE)
