"""``backtest_sweep``: a parameter sweep scored in chunks by the compiled core, its best confirmed in backtrader.

Trigger with conf, e.g.::

    {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
     "start": "2017-01-01", "end": "2018-01-01",
     "grid": {"fast": [5, 10, 20]}, "ranges": {"slow": {"start": 30, "stop": 60, "step": 10}},
     "metric": "sharpe", "top": 5, "tasks": 2}

The same sweep as ``mbats sweep`` (:mod:`mbats.research.sweep`): ``prepare`` records the sweep and
opens the MLflow parent run; ``score_chunk`` is mapped over chunks of configurations (at least
``tasks`` of them, up to 5,000 configurations each), each scored by the compiled core on its
runner's threads into ``sweep_scores``; ``confirm`` ranks every configuration, re-runs the top N
in backtrader (risk-DB runs with ``run_type = 'sweep'``, MLflow children of the parent), checks
they agree trade for trade, and stores each re-run's ``sweep_rank``. A strategy without vectorised
signals gets one backtrader run per mapped task instead (at most 1,000). Every task that writes the
risk DB runs on the strategy-runner Celery queue (ignored by the LocalExecutor); retried tasks
rewrite their scores and keep runs an earlier attempt finished, so a killed runner never
duplicates a run.

``"search": "optuna"`` samples the same grid with Optuna's TPE (``mbats sweep --search optuna``)
within ``trials`` and/or ``timeout``; nothing is mapped (each batch of trials depends on the scores
so far) and ``confirm`` runs the search, its backtrader confirmation and the recording, e.g.::

    {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "grid": {"fast": [5, 10, 15, 20]},
     "ranges": {"slow": {"start": 30, "stop": 120, "step": 10}}, "search": "optuna", "trials": 40,
     "seed": 1, "prune": true}
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from mbats.alerts import airflow_failure_callback
from mbats.orchestration import strategy_queue
from mbats.orchestration import sweep as sw


@dag(
    dag_id="backtest_sweep",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mbats", "research"],
    default_args={"on_failure_callback": airflow_failure_callback},
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
        "top": Param(5, type="integer", minimum=0, description="configurations confirmed in backtrader"),
        "tasks": Param(2, type="integer", minimum=1, maximum=64,
                       description="mapped scoring tasks at least (one per strategy runner)"),
        "cash": Param(100000.0, type="number"),
        "commission": Param(0.0, type="number"),
        "spread_pips": Param(0.0, type="number"),
        "search": Param("grid", type="string", enum=["grid", "optuna"],
                        description="grid: every configuration; optuna: TPE over the grid's values"),
        "trials": Param(None, type=["null", "integer"], minimum=1, description="optuna: completed trials in all"),
        "timeout": Param(None, type=["null", "number"], description="optuna: seconds to search"),
        "seed": Param(None, type=["null", "integer"], minimum=0, description="optuna: sampler seed (default 0)"),
        "study": Param(None, type=["null", "string"], description="optuna: study name (default: derived)"),
        "resume": Param(False, type="boolean", description="optuna: continue the named study"),
        "prune": Param(False, type="boolean", description="optuna: stop trials on their first-half score"),
    },
)
def backtest_sweep():
    # records the sweep in the risk DB: on the strategy runners (the default queue's workers load bars only)
    @task(queue=strategy_queue())
    def prepare() -> dict:
        """Validate the conf, fix the sweep id, record the sweep and open the MLflow parent run."""
        conf = sw.prepare(dict(get_current_context()["params"]))
        print(f"sweep {conf['sweep_id']}: {sw.configurations(conf):,} configurations")
        return conf

    @task(queue=strategy_queue())
    def chunks(conf: dict) -> list[dict]:
        return sw.chunks(conf)

    # retried on another runner when its runner dies (a chunk rewrites the same scores)
    @task(queue=strategy_queue(), map_index_template="{{ mbats_label }}", retries=1,
          retry_delay=timedelta(seconds=20))
    def score_chunk(chunk: dict, conf: dict) -> dict:
        """Score one chunk of configurations (compiled core; backtrader for strategies without signals)."""
        get_current_context()["mbats_label"] = chunk["label"]
        summary = sw.score_chunk(conf, chunk)
        print(f"{chunk['label']}: {summary['count']} configurations by {summary['engine']} in "
              f"{summary['seconds']:.2f} s {' '.join(summary['notes'])}")
        return summary

    @task(queue=strategy_queue(), trigger_rule="all_done", retries=1, retry_delay=timedelta(seconds=20))
    def confirm(conf: dict) -> dict:
        """Rank every scored configuration, re-run the top N in backtrader, record ranks; the best."""
        summary = sw.confirm(conf)
        for note in summary.get("notes", []):
            print(note)
        for row in summary["best"]:
            print(f"#{row['rank']} run {row['run_id']} {row['params']} {conf['metric']}={row[conf['metric']]} "
                  f"agrees={row['agrees']}")
        return summary

    conf = prepare()
    scored = score_chunk.partial(conf=conf).expand(chunk=chunks(conf))
    scored >> confirm(conf)


backtest_sweep()
