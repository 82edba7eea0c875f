"""``model_training``: weekly retrain, register as ``@challenger``, promote to ``@champion`` if better.

Training is walk-forward (out-of-sample metrics pooled over the folds), logged to MLflow with the
dataset; promotion compares the challenger's OOS metric with the champion's
(see :mod:`mbats.ml.registry`). The strategies and the serving container follow ``@champion``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from mbats.alerts import airflow_failure_callback
from mbats.orchestration import strategy_queue
from mbats.orchestration.timetables import future_cron


@dag(
    dag_id="model_training",
    schedule=future_cron("0 6 * * 6", "UTC"),  # Saturdays, markets closed; unpausing starts no past run
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mbats", "ml"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10), "on_failure_callback": airflow_failure_callback},
    params={
        "instruments": Param(["EUR_USD"], type="array", items={"type": "string"}),
        "granularity": Param("H1", type="string"),
        "start": Param(None, type=["null", "string"], description="first bar (ISO), default: all stored"),
        "end": Param(None, type=["null", "string"], description="end of data (exclusive), default: all stored"),
        "model": Param("logreg", type="string"),
        "model_params": Param({}, type="object"),
        "folds": Param(5, type="integer", minimum=2),
        "horizon": Param(1, type="integer", minimum=1),
        "model_name": Param(None, type=["null", "string"], description="registered model; default MBATS_ML_MODEL_NAME"),
        "metric": Param("oos_auc", type="string", description="promotion metric"),
        "min_improvement": Param(0.0, type="number"),
    },
)
def model_training():
    @task(queue=strategy_queue())
    def train_challenger() -> dict:
        """Train walk-forward and register the new version as @challenger."""
        from mbats.orchestration.training import train_challenger as train

        p = get_current_context()["params"]
        result = train(p["instruments"], p["granularity"], p.get("start"), p.get("end"), p["model"],
                       p.get("model_params"), p["folds"], p["horizon"], p.get("model_name"))
        print(f"registered {result['model_uri']} as @challenger; OOS {result['oos_metrics']}")
        return result

    @task
    def promote_if_better(trained: dict) -> dict:
        """Move @champion to the challenger if it is better out of sample."""
        from mbats.orchestration.training import promote_if_better as promote

        p = get_current_context()["params"]
        outcome = promote(trained["model_name"], p["metric"], p["min_improvement"])
        print(outcome["reason"])
        return outcome

    promote_if_better(train_challenger())


model_training()
