"""A retried sweep configuration runs once (issue 12): when a strategy runner dies in the middle of
a backtest, Airflow retries the task on another runner; the dead attempt may have left a `running`
run in the risk DB (or even finished one before the task could report). Before the retry runs, this
keeps a finished run of the same configuration (its summary is the task's result) and deletes
unfinished ones (their rows cascade; their MLflow runs are marked KILLED), so a sweep never holds
two runs of one configuration.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _same_config(run_params: dict | None, config: dict) -> bool:
    # the stored params are the strategy's full set (defaults filled in); the configuration is a subset
    params = run_params or {}
    return all(key in params and params[key] == value for key, value in config.items())


def previous_attempt(sweep_id: str, config: dict) -> dict | None:
    """The summary of an earlier attempt's finished run of ``config``; None when it must run again."""
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        runs = [r for r in store.list_runs(conn, limit=100_000, sweep_id=sweep_id) if _same_config(r["params"], config)]
        finished = [r for r in runs if r["status"] == "finished"]
        keep = min(finished, key=lambda r: r["id"]) if finished else None
        stale = [r for r in runs if r is not keep]
        if stale:
            with conn.cursor() as cur:
                cur.execute("DELETE FROM runs WHERE id = ANY(%s)", ([r["id"] for r in stale],))
            conn.commit()
            log.warning("sweep %s %s: removed %d run(s) of an earlier attempt: %s", sweep_id, config, len(stale),
                        [(r["id"], r["status"]) for r in stale])
    finally:
        conn.close()
    _kill_mlflow_runs([r["mlflow_run_id"] for r in stale if r.get("mlflow_run_id")])
    if keep is None:
        return None
    log.warning("sweep %s %s: an earlier attempt finished run %s; not running it again", sweep_id, config, keep["id"])
    return {"run_id": keep["id"], "sweep_id": sweep_id, "params": keep["params"], "metrics": keep["metrics"],
            "mlflow_run_id": keep["mlflow_run_id"], "reused": True}


def _kill_mlflow_runs(run_ids: list[str]) -> None:
    if not run_ids:
        return
    try:
        import mlflow

        from mbats.tracking import tracking_uri

        client = mlflow.MlflowClient(tracking_uri=tracking_uri())
        for run_id in run_ids:
            client.set_terminated(run_id, status="KILLED")
    except Exception as exc:  # bookkeeping only: the retry must still run
        log.warning("could not mark MLflow runs %s KILLED: %s", run_ids, exc)
