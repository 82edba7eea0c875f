"""``backtest_sweep``: a parameter sweep as mapped backtests, ranked into the risk DB.

Trigger with conf, e.g.::

    {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
     "start": "2017-01-01", "end": "2018-01-01",
     "grid": {"fast": [5, 10, 20]}, "ranges": {"slow": {"start": 30, "stop": 60, "step": 10}},
     "metric": "sharpe", "top": 5}

One mapped task per configuration, labelled by its parameters; each is a backtest recorded in
the risk DB (``run_type = 'sweep'``, shared ``sweep_id``) and an MLflow child run of the sweep's
parent run. ``rank`` stores every run's place as the ``sweep_rank`` metric and lists the best.
Configurations run on the strategy-runner Celery queue (ignored by the LocalExecutor).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from mbats.orchestration import strategy_queue
from mbats.orchestration import sweep as sw
from mbats.orchestration import sweep_retry


@dag(
    dag_id="backtest_sweep",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mbats", "research"],
    doc_md=__doc__,
    params={
        "strategy": Param("sma_crossover", type="string", description="strategy name"),
        "instruments": Param(["EUR_USD"], type="array", items={"type": "string"}),
        "granularity": Param("H1", type="string"),
        "start": Param(None, type=["null", "string"], description="first bar (ISO date), default: all"),
        "end": Param(None, type=["null", "string"], description="end of data (exclusive), default: all"),
        "grid": Param({"fast": [5, 10], "slow": [30, 50]}, type="object",
                      description="{param: [values]}: every combination is one configuration"),
        "ranges": Param({}, type="object", description="{param: {start, stop, step}} (stop inclusive)"),
        "metric": Param("sharpe", type="string", description="rank by this run metric"),
        "top": Param(5, type="integer", minimum=1),
        "cash": Param(100000.0, type="number"),
        "commission": Param(0.0, type="number"),
        "spread_pips": Param(0.0, type="number"),
    },
)
def backtest_sweep():
    @task
    def prepare() -> dict:
        """Validate the conf, fix the sweep id, open the MLflow parent run."""
        conf = sw.normalize_conf(dict(get_current_context()["params"]))
        conf["parent_run_id"] = sw.start_parent_run(conf)
        print(f"sweep {conf['sweep_id']}: {len(sw.expand_grid(conf))} configurations")
        return conf

    @task
    def configurations(conf: dict) -> list[dict]:
        return sw.expand_grid(conf)

    # retried at once on another runner when its runner dies (a backtest is cheap to redo)
    @task(queue=strategy_queue(), map_index_template="{{ mbats_label }}", retries=1,
          retry_delay=timedelta(seconds=20))
    def run_configuration(config: dict, conf: dict) -> dict:
        """One backtest of the sweep."""
        ctx = get_current_context()
        ctx["mbats_label"] = sw.label(config)
        if ctx["ti"].try_number > 1:  # never two runs of one configuration in the sweep
            done = sweep_retry.previous_attempt(conf["sweep_id"], config)
            if done is not None:
                return done
        return sw.run_config(conf, config, conf.get("parent_run_id"))

    # writes ranks into the risk DB: on the strategy runners (the default queue's workers load bars only)
    @task(queue=strategy_queue(), trigger_rule="all_done")
    def rank(conf: dict) -> dict:
        """Rank the sweep's runs in the risk DB and list the best configurations."""
        summary = sw.rank(conf["sweep_id"], conf["metric"], conf["top"], conf.get("parent_run_id"))
        for row in summary["best"]:
            print(f"#{row['rank']} run {row['run_id']} {row['params']} {conf['metric']}={row[conf['metric']]}")
        return summary

    conf = prepare()
    results = run_configuration.partial(conf=conf).expand(config=configurations(conf))
    results >> rank(conf)


backtest_sweep()
