"""``walk_forward``: walk-forward optimisation of a strategy over one or more instruments.

Trigger with conf, e.g.::

    {"strategy": "sma_crossover", "instruments": ["EUR_USD", "GBP_USD"], "granularity": "H1",
     "grid": {"fast": [5, 10, 20]}, "ranges": {"slow": {"start": 30, "stop": 90, "step": 30}},
     "train": "90D", "test": "30D", "anchored": false, "metric": "sharpe", "workers": 2}

The same walk-forward as ``mbats walkforward`` (:mod:`mbats.research.walkforward`): ``prepare``
checks the conf and records the walk-forward in the risk DB; ``run`` picks the best configuration
in each in-sample window, trades it out of sample, stitches the out-of-sample equity and records
windows, equity, in-sample vs out-of-sample degradation and an MLflow run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from mbats.orchestration import strategy_queue
from mbats.orchestration import walkforward as wf


@dag(
    dag_id="walk_forward",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mbats", "research"],
    doc_md=__doc__,
    params={
        "strategy": Param("sma_crossover", type="string", description="strategy name (vectorised signals or brackets, e.g. rsi_atr)"),
        "instruments": Param(["EUR_USD"], type="array", items={"type": "string"}),
        "granularity": Param("H1", type="string"),
        "start": Param(None, type=["null", "string"], description="first bar (ISO date), default: all"),
        "end": Param(None, type=["null", "string"], description="end of data (exclusive), default: all"),
        "grid": Param({"fast": [5, 10], "slow": [30, 50]}, type="object", description="{param: [values]}"),
        "ranges": Param({}, type="object", description="{param: {start, stop, step}} (stop inclusive)"),
        "train": Param("90D", type="string", description="in-sample window length"),
        "test": Param("30D", type="string", description="out-of-sample window length (and step)"),
        "anchored": Param(False, type="boolean", description="every in-sample window starts at the first bar"),
        "metric": Param("sharpe", type="string", description="picks the in-sample winner"),
        "workers": Param(1, type="integer", minimum=1, maximum=64, description="processes for the windows"),
        "cash": Param(100000.0, type="number"),
        "commission": Param(0.0, type="number"),
        "spread_pips": Param(0.0, type="number"),
    },
)
def walk_forward():
    @task(queue=strategy_queue())
    def prepare() -> dict:
        """Validate the conf, fix the walk-forward id and record it."""
        conf = wf.prepare(dict(get_current_context()["params"]))
        print(f"walk-forward {conf['wf_id']}: {conf['strategy']} on {', '.join(conf['instruments'])}")
        return conf

    @task(queue=strategy_queue(), retries=1, retry_delay=timedelta(seconds=20))
    def run(conf: dict) -> dict:
        """Every window: best in-sample, traded out of sample, stitched and recorded."""
        summary = wf.run(conf)
        print(f"{summary['windows']} windows: in-sample {conf['metric']} {summary['is_mean']}, "
              f"out-of-sample {summary['oos_mean']}, degradation {summary['degradation']}")
        return summary

    run(prepare())


walk_forward()
