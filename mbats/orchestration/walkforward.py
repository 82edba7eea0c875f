"""The ``walk_forward`` DAG's steps: its conf checked and turned into :mod:`mbats.research.walkforward` calls.

The same walk-forward as ``mbats walkforward``: ``prepare`` checks the conf and records the
walk-forward (status running, its id fixed so a retried task writes the same rows), ``run`` scores
every window and records windows, stitched equity and the MLflow run.
"""

from __future__ import annotations

from dataclasses import replace

from mbats.errors import MbatsError
from mbats.orchestration import sweep as sw


class WalkForwardConfError(MbatsError):
    """The walk-forward's conf (strategy, instruments, windows, grid) is invalid."""


def normalize_conf(conf: dict | None) -> dict:
    """Validate the DAG run conf (the sweep's vocabulary plus train/test/anchored) and fill defaults."""
    import pandas as pd

    conf = dict(conf or {})
    sweep_conf = {**conf, "top": 0, "tasks": 1, "sweep_id": "unused"}
    try:
        out = sw.normalize_conf(sweep_conf)   # strategy, instruments, grid/ranges, metric, costs, dates
    except MbatsError as exc:
        raise WalkForwardConfError(str(exc)) from None
    for key in ("train", "test"):
        value = conf.get(key)
        try:
            if pd.Timedelta(value) <= pd.Timedelta(0):
                raise ValueError
        except (TypeError, ValueError):
            raise WalkForwardConfError(f"conf.{key}: {value!r} is not a positive length such as 90D") from None
    if not isinstance(conf.get("anchored", False), bool):
        raise WalkForwardConfError(f"conf.anchored: must be true or false (got {conf.get('anchored')!r})")
    workers = sw._number(conf, "workers", 1, int)
    if not 1 <= workers <= 64:
        raise WalkForwardConfError(f"conf.workers: must be from 1 to 64 (got {workers})")
    out.pop("top"), out.pop("tasks"), out.pop("sweep_id")
    return out | {"train": str(conf["train"]), "test": str(conf["test"]), "anchored": conf.get("anchored", False),
                  "workers": workers, "track": conf.get("track", True) is not False, "wf_id": conf.get("wf_id")}


def request(conf: dict):
    from mbats.research.walkforward import WalkForwardRequest

    base = replace(sw.base_spec({**conf, "sweep_id": None}), run_type="walk_forward", sweep_id=None)
    return WalkForwardRequest(base, conf["grid"], conf["train"], conf["test"], conf["anchored"], conf["metric"],
                              conf["workers"], track=conf["track"], wf_id=conf.get("wf_id"))


def prepare(conf: dict | None) -> dict:
    """Check the conf and record the walk-forward; the conf (with its wf_id) the run task gets."""
    from mbats.research.walkforward import open_walk_forward

    conf = normalize_conf(conf)
    conf["wf_id"] = open_walk_forward(request(conf))
    return conf


def run(conf: dict) -> dict:
    """Every window of every instrument, recorded; the summary (XCom)."""
    from mbats.research.walkforward import run_walk_forward

    result = run_walk_forward(request(conf))
    return {"wf_id": result.wf_id, "metric": result.rank_by, **result.summary,
            "total_return_pct": result.metrics.get("total_return_pct"), "sharpe": result.metrics.get("sharpe"),
            "mlflow_run_id": result.mlflow_run_id}
