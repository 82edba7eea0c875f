"""Per-configuration entry points for schedulers (the ``backtest_sweep`` Airflow DAG maps over them).

``run_sweep_config`` runs one configuration of a sweep — in backtrader by default (a risk-DB run,
``run_type="sweep"``) or only vectorised (a row in ``sweep_scores``) — and ``rank_sweep`` ranks
whatever a sweep has produced so far. Both take and return plain JSON-able values.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pandas as pd

from mbats.backtest.runner import BacktestSpec, load_bars, run_backtest
from mbats.kernel.trades import trades_fingerprint
from mbats.errors import MbatsError
from mbats.research.sweep import sort_key, store_ranks
from mbats.research.vectorised import vector_simulate

_SPEC_FIELDS = {f.name for f in dataclasses.fields(BacktestSpec)}


def spec_from_dict(spec: dict) -> BacktestSpec:
    """A BacktestSpec from JSON values (ISO dates, instruments as a list or "A,B")."""
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise MbatsError(f"unknown sweep spec field(s) {', '.join(unknown)}; fields: {', '.join(sorted(_SPEC_FIELDS))}")
    values = dict(spec)
    if isinstance(values.get("instruments"), str):
        values["instruments"] = [s.strip() for s in values["instruments"].split(",") if s.strip()]
    for key in ("start", "end"):
        if values.get(key) not in (None, "") and not isinstance(values[key], datetime):
            ts = pd.Timestamp(values[key])
            values[key] = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
    values.setdefault("run_type", "sweep")
    return BacktestSpec(**values)


def _label(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def run_sweep_config(spec: BacktestSpec | dict, parent_run_id: str | None = None, stage: str = "backtrader") -> dict:
    """Run one configuration of sweep ``spec.sweep_id``; a JSON-able summary.

    ``stage="backtrader"``: a full run in the risk DB (and MLflow, as a child of ``parent_run_id``).
    ``stage="vectorised"``: score it only, into ``sweep_scores`` (the sweep row must exist).
    """
    spec = spec if isinstance(spec, BacktestSpec) else spec_from_dict(spec)
    if not spec.sweep_id:
        raise MbatsError("a sweep configuration needs a sweep_id")
    spec = dataclasses.replace(spec, run_type="sweep")
    if stage == "vectorised":
        return _score_config(spec)
    if stage != "backtrader":
        raise MbatsError(f"stage must be 'backtrader' or 'vectorised', not '{stage}'")
    result = run_backtest(spec, track=True, write_report=False)
    if parent_run_id and result.mlflow_run_id:
        import mlflow

        mlflow.MlflowClient().set_tag(result.mlflow_run_id, "mlflow.parentRunId", parent_run_id)
    return {"run_id": result.run_id, "sweep_id": spec.sweep_id, "params": result.params, "metrics": result.metrics,
            "trades_sha256": result.trades_hash(), "seconds": result.seconds,
            "mlflow_run_id": result.mlflow_run_id, "label": _label(result.params)}


def _score_config(spec: BacktestSpec) -> dict:
    from psycopg2.extras import Json

    from mbats.db import connect
    from mbats.risk.store import to_jsonable

    run = vector_simulate(spec, load_bars(spec))
    sha = trades_fingerprint(run.trades)
    trades = int((~run.trades["is_open"]).sum())
    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COALESCE(MAX(config_id), 0) + 1 FROM sweep_scores WHERE sweep_id = %s",
                        (spec.sweep_id,))
            config_id = cur.fetchone()[0]
            cur.execute("INSERT INTO sweep_scores (sweep_id, config_id, params, metrics, trades, trades_sha256, "
                        "seconds) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (spec.sweep_id, config_id, Json(to_jsonable(run.params)), Json(run.metrics), trades, sha,
                         run.seconds))
        conn.commit()
    except Exception as exc:
        conn.rollback()
        if "sweep_scores_sweep_id_fkey" in str(exc):
            raise MbatsError(f"sweep {spec.sweep_id} is not in the sweeps table; create it first") from None
        raise
    finally:
        conn.close()
    return {"sweep_id": spec.sweep_id, "config_id": config_id, "params": run.params, "metrics": run.metrics,
            "trades": trades, "trades_sha256": sha, "seconds": run.seconds, "label": _label(run.params)}


def rank_sweep(sweep_id: str, metric: str = "sharpe", top: int = 5) -> dict:
    """Rank a sweep's finished backtrader runs (stored as ``sweep_rank``) and its vectorised scores."""
    from mbats.db import connect
    from mbats.risk.store import read_frame

    runs = store_ranks(sweep_id, metric)
    conn = connect("risk")
    try:
        scores = read_frame(conn, "SELECT config_id, params, metrics, trades, run_id, agrees FROM sweep_scores "
                                  "WHERE sweep_id = %s", (sweep_id,))
    finally:
        conn.close()
    if not runs and scores.empty:
        raise MbatsError(f"sweep {sweep_id}: nothing recorded (no runs, no vectorised scores)")
    finished = sorted((r for r in runs if r["status"] == "finished"), key=lambda r: r["rank"])
    best = [{"rank": r["rank"], "run_id": r["id"], "params": r["params"], metric: r["metrics"].get(metric),
             "total_return_pct": r["metrics"].get("total_return_pct"), "trades": r["metrics"].get("trades"),
             "mlflow_run_id": r["mlflow_run_id"]} for r in finished[:top]]
    vectorised = sorted(scores.to_dict("records"), key=lambda s: (sort_key(s["metrics"], metric), s["config_id"]))
    return {"sweep_id": sweep_id, "metric": metric, "runs": len(runs), "finished": len(finished),
            "failed": sum(r["status"] == "failed" for r in runs), "best": best,
            "vectorised": [{"rank": i, "config_id": s["config_id"], "params": s["params"],
                            metric: s["metrics"].get(metric), "total_return_pct": s["metrics"].get("total_return_pct"),
                            "trades": s["trades"], "run_id": s["run_id"], "agrees": s["agrees"]}
                           for i, s in enumerate(vectorised[:top], 1)]}


__all__ = ["rank_sweep", "run_sweep_config", "spec_from_dict"]
