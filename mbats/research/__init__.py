"""Fast research: vectorised pre-screen sweeps, iterative indicators, walk-forward, parallel runs.

Airflow's ``backtest_sweep`` DAG (via :mod:`mbats.orchestration.sweep`) looks up
``run_sweep_config`` and ``rank_sweep`` here. They are imported lazily so that strategies
importing :mod:`mbats.kernel.indicators` stay light.
"""

__all__ = ["rank_sweep", "run_sweep_config"]


def __getattr__(name: str):
    if name in __all__:
        from mbats.research import tasks

        return getattr(tasks, name)
    raise AttributeError(name)
