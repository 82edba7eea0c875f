"""Risk-DB rows of research results: Monte Carlo of runs and walk-forward optimisations.

Tables from migration ``rk_res01``: ``montecarlo``; ``walk_forwards``, ``walk_forward_windows``,
``walk_forward_equity``. Kept beside :mod:`mbats.risk.store` (runs and sweeps).
"""

from __future__ import annotations

import pandas as pd
from psycopg2.extras import Json, execute_values

from mbats.risk.store import fetch_one, to_jsonable

MC_SUMMARY = ("final_equity_p5", "final_equity_p50", "final_equity_p95", "max_drawdown_pct_p5",
              "max_drawdown_pct_p50", "max_drawdown_pct_p95", "prob_loss")
_MC_COLUMNS = ("run_id", "method", "paths", "seed", "block_days", "samples", "start_cash", *MC_SUMMARY,
               "run_final_equity", "run_max_drawdown_pct", "percentiles", "seconds")


# --- Monte Carlo -----------------------------------------------------------------------------------

def read_run_for_montecarlo(conn, run_id: int) -> tuple[dict, pd.DataFrame, pd.Series]:
    """The run's cash and metrics, its trades (net P&L, open or not) and its equity curve."""
    with conn.cursor() as cur:
        row = fetch_one(cur, "SELECT cash, status FROM runs WHERE id = %s", (run_id,),
                        f"no run {run_id} in the risk database; list runs with `mbats runs`")
        cur.execute("SELECT metric, value FROM run_metrics WHERE run_id = %s", (run_id,))
        metrics = dict(cur.fetchall())
        cur.execute("SELECT pnl_net, is_open FROM trades WHERE run_id = %s ORDER BY entry_ts, trade_ref", (run_id,))
        trades = pd.DataFrame(cur.fetchall(), columns=["pnl_net", "is_open"])
        cur.execute("SELECT ts, value FROM equity WHERE run_id = %s ORDER BY ts", (run_id,))
        rows = cur.fetchall()
    equity = pd.Series([r[1] for r in rows], index=pd.DatetimeIndex([r[0] for r in rows]), dtype="float64")
    trades["pnl_net"] = trades["pnl_net"].astype("float64")
    trades["is_open"] = trades["is_open"].astype(bool)
    return {"cash": float(row["cash"]), "status": row["status"], "metrics": metrics}, trades, equity


def save_montecarlo(conn, run_id: int, result, run_metrics: dict) -> int:
    """Insert (or replace: same run, method, paths, seed, block length) one simulation's row; its id."""
    summary = result.summary()
    values = (run_id, result.method, result.paths, result.seed, result.block_days, result.samples, result.start_cash,
              *(summary[k] for k in MC_SUMMARY), run_metrics.get("final_value"), run_metrics.get("max_drawdown_pct"),
              Json(to_jsonable(result.percentiles())), result.seconds)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO montecarlo ({', '.join(_MC_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_MC_COLUMNS))}) "
            "ON CONFLICT ON CONSTRAINT montecarlo_run_method_key DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _MC_COLUMNS[5:]) + ", created_at = now() RETURNING id",
            values)
        mc_id = cur.fetchone()[0]
    conn.commit()
    return mc_id


def read_montecarlo(conn, run_id: int) -> list[dict]:
    """Every stored simulation of a run, newest first (without the 1..99 percentile table)."""
    columns = ("id", *_MC_COLUMNS[1:-2], "seconds", "created_at")
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM montecarlo WHERE run_id = %s ORDER BY created_at DESC, id DESC",
                    (run_id,))
        return [dict(zip(columns, row)) for row in cur.fetchall()]


# --- walk-forward ----------------------------------------------------------------------------------

_WF_WINDOW_COLUMNS = ("instrument", "window_no", "train_start", "train_end", "test_start", "test_end", "params",
                      "is_score", "oos_score", "is_metrics", "oos_metrics", "oos_trades")


def create_walk_forward(conn, *, wf_id: str, strategy: str, instruments: list[str], granularity: str, grid: dict,
                        broker: dict, rank_by: str, train: str, test: str, anchored: bool) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO walk_forwards (wf_id, strategy, instruments, granularity, grid, broker, rank_by, train, test, "
            "anchored) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (wf_id) DO NOTHING",
            (wf_id, strategy, list(instruments), granularity, Json(to_jsonable(grid)), Json(to_jsonable(broker)),
             rank_by, train, test, anchored))
    conn.commit()


def save_walk_forward(conn, wf_id: str, *, windows: list[dict], equity: dict[str, pd.Series], summary: dict,
                      metrics: dict, seconds: float, mlflow_run_id: str | None) -> None:
    """Windows, stitched equity and the summary in one transaction; status finished."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM walk_forward_windows WHERE wf_id = %s", (wf_id,))
        cur.execute("DELETE FROM walk_forward_equity WHERE wf_id = %s", (wf_id,))
        execute_values(cur, f"INSERT INTO walk_forward_windows (wf_id, {', '.join(_WF_WINDOW_COLUMNS)}) VALUES %s",
                       [(wf_id, *(Json(to_jsonable(w[c])) if c.endswith(("params", "metrics")) else w[c]
                                  for c in _WF_WINDOW_COLUMNS)) for w in windows])
        execute_values(cur, "INSERT INTO walk_forward_equity (wf_id, instrument, ts, value) VALUES %s",
                       [(wf_id, name, ts.to_pydatetime(), float(v)) for name, series in equity.items()
                        for ts, v in series.items()], page_size=5000)
        cur.execute(
            "UPDATE walk_forwards SET windows = %s, is_mean = %s, oos_mean = %s, degradation = %s, efficiency = %s, "
            "metrics = %s, seconds = %s, mlflow_run_id = %s, status = 'finished', finished_at = now() WHERE wf_id = %s",
            (summary["windows"], summary["is_mean"], summary["oos_mean"], summary["degradation"], summary["efficiency"],
             Json(to_jsonable(metrics)), seconds, mlflow_run_id, wf_id))
    conn.commit()


def fail_walk_forward(conn, wf_id: str) -> None:
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("UPDATE walk_forwards SET status = 'failed', finished_at = now() WHERE wf_id = %s", (wf_id,))
    conn.commit()


def read_walk_forward(conn, wf_id: str) -> dict:
    """The walk-forward's row (the shape of store.get_run), its windows and equity points per instrument."""
    with conn.cursor() as cur:
        out = fetch_one(cur, "SELECT * FROM walk_forwards WHERE wf_id = %s", (wf_id,),
                        f"no walk-forward {wf_id} in the risk database")
        cur.execute(f"SELECT {', '.join(_WF_WINDOW_COLUMNS)} FROM walk_forward_windows WHERE wf_id = %s "
                    "ORDER BY instrument, window_no", (wf_id,))
        out["window_rows"] = [dict(zip(_WF_WINDOW_COLUMNS, r)) for r in cur.fetchall()]
        cur.execute("SELECT instrument, count(*) FROM walk_forward_equity WHERE wf_id = %s GROUP BY instrument",
                    (wf_id,))
        out["equity_points"] = dict(cur.fetchall())
    return out
