"""Fast research: two-stage parameter sweeps (compiled scoring core, backtrader confirmation),
vectorised simulation, iterative indicators and walk-forward optimisation.

The CLI (``mbats sweep``) and the ``backtest_sweep`` Airflow DAG (through
:mod:`mbats.orchestration.sweep`) both run :mod:`mbats.research.sweep`.
"""
