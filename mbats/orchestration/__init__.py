"""Helpers the Airflow DAGs call: deployments file, market-data intervals, sweeps, live sessions.

The DAGs in ``dags/`` stay thin: every task is one call into this package (or another part of
``mbats``), so the same work runs from the CLI, a notebook or a test without Airflow.
Nothing here imports Airflow. Settings are read when called (``Settings()``, not the cached
copy): a DAG file, a task and a test may each run with a different environment.
"""


def strategy_queue() -> str:
    """The Celery queue served by the strategy-runner workers (backtests, sweep configs, live sessions).

    With the LocalExecutor the queue is ignored and everything runs locally.
    """
    from mbats.config import Settings

    return Settings().strategy_queue
