"""Writing runs to, and reading them from, the risk database.

The risk DB has one writer, this package: backtests and sweeps write through this module, live and
paper sessions through :mod:`mbats.risk.live`, end-of-day reports through :mod:`mbats.risk.eod`.
The column lists below are the only copy.

A run row is committed first with status ``running`` (so a crash leaves a visible failed/stuck
run, never orphan rows); everything a finished run produced is then written in one
transaction together with the status change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone

import pandas as pd
from psycopg2.extras import Json, execute_values

from mbats.db.copy import copy_in
from mbats.errors import NotFoundError

log = logging.getLogger(__name__)

ORDER_COLUMNS = ("order_ref", "client_order_id", "parent_ref", "instrument", "created_at", "side", "order_type",
                 "size", "price", "status", "updated_at")
FILL_COLUMNS = ("fill_id", "order_ref", "instrument", "ts", "size", "price", "commission")
TRADE_COLUMNS = ("trade_ref", "instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts", "exit_price",
                 "pnl", "pnl_net", "commission", "return_pct", "mfe_pct", "mae_pct", "bars_held", "is_open", "financing")
POSITION_COLUMNS = ("ts", "instrument", "size", "avg_price", "market_price", "unrealized_pnl")
RISK_EVENT_COLUMNS = ("ts", "rule", "instrument", "detail", "action")
EQUITY_FIELDS = (("run_id", "int8"), ("ts", "timestamptz"), ("cash", "float8"), ("value", "float8"),
                 ("drawdown_pct", "float8"), ("margin_used", "float8"))
EQUITY_COLUMNS = tuple(name for name, _ in EQUITY_FIELDS[1:])
FINANCING_COLUMNS = ("ts", "instrument", "units", "price", "annual_rate", "days", "amount_quote", "fx_rate", "amount")
_RUN_COLUMNS = ("run_type", "mode", "strategy", "params", "instruments", "granularity", "data_from", "data_to",
                "cash", "broker", "code_version", "sweep_id", "account", "model_uri", "model_version", "model_name",
                "model_run_id")


def create_run(conn, **meta) -> int:
    """Insert a run with status 'running' and commit it; return its id."""
    values = [Json(meta.get(c)) if c in ("params", "broker") else meta.get(c) for c in _RUN_COLUMNS]
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
            values,
        )
        run_id = cur.fetchone()[0]
    conn.commit()
    return run_id


def mark_failed(conn, run_id: int, error: str) -> None:
    """Record a run's failure; never raises, so the failure being recorded is the one the caller sees.

    The run's own connection may be what failed (the database restarted, the network dropped), so
    when it cannot be used a fresh connection records the failure; if the database is unreachable
    too, that is logged and the run stays ``running`` for the stale-run sweep.
    """
    sql = ("UPDATE runs SET status = 'failed', error = %s, finished_at = now(), "
           "duration_s = extract(epoch FROM now() - started_at) WHERE id = %s")
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(sql, (error[:2000], run_id))
        conn.commit()
        return
    except Exception as exc:  # noqa: BLE001 - any failure here must not replace the real error
        log.warning("run %s: its connection is unusable (%s); recording the failure on a new one",
                    run_id, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    try:
        from mbats.db import connect

        fresh = connect("risk")
        try:
            with fresh.cursor() as cur:
                cur.execute(sql, (error[:2000], run_id))
            fresh.commit()
        finally:
            fresh.close()
    except Exception as exc:  # noqa: BLE001
        log.error("run %s failed (%s) and the risk DB could not record it: %s", run_id, error[:200],
                  str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def _sql_value(value):
    """NaN/NaT become NULL; numpy scalars become Python values psycopg2 understands."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _insert_rows(cur, table: str, run_id: int, rows: Iterable[dict], columns: tuple[str, ...]) -> None:
    rows = list(rows)
    if rows:
        execute_values(
            cur,
            f"INSERT INTO {table} (run_id, {', '.join(columns)}) VALUES %s",
            [(run_id, *(_sql_value(r.get(c)) for c in columns)) for r in rows],
            page_size=1000,
        )


def save_results(
    conn,
    run_id: int,
    *,
    orders: list[dict],
    fills: list[dict],
    trades: list[dict],
    positions: list[dict],
    equity: pd.DataFrame,
    metrics: dict[str, float | None],
    bars: int,
    data_from: datetime | None,
    data_to: datetime | None,
    report_path: str | None = None,
    risk_events: list[dict] = (),
    financing: list[dict] = (),
) -> None:
    """Write everything a run produced and mark it finished, in one transaction."""
    with conn.cursor() as cur:
        _insert_rows(cur, "orders", run_id, orders, ORDER_COLUMNS)
        _insert_rows(cur, "fills", run_id, fills, FILL_COLUMNS)
        _insert_rows(cur, "trades", run_id, trades, TRADE_COLUMNS)
        _insert_rows(cur, "positions", run_id, positions, POSITION_COLUMNS)
        if len(equity):
            copy_in(cur, "equity", EQUITY_FIELDS,
                    {"run_id": [run_id] * len(equity), "ts": equity.index, "cash": equity["cash"],
                     "value": equity["value"], "drawdown_pct": equity["drawdown_pct"],
                     "margin_used": equity["margin_used"] if "margin_used" in equity else [float("nan")] * len(equity)},
                    len(equity))
        _insert_rows(cur, "financing", run_id, financing, FINANCING_COLUMNS)
        _insert_rows(cur, "risk_events", run_id, risk_events, RISK_EVENT_COLUMNS)
        _insert_rows(cur, "run_metrics", run_id, ({"metric": k, "value": v} for k, v in metrics.items()),
                     ("metric", "value"))
        cur.execute(
            "UPDATE runs SET status = 'finished', finished_at = now(), "
            "duration_s = extract(epoch FROM now() - started_at), bars = %s, data_from = %s, data_to = %s, "
            "report_path = %s WHERE id = %s",
            (bars, data_from, data_to, report_path, run_id),
        )
    conn.commit()


def add_risk_events(conn, run_id: int | None, events: Iterable[dict], commit: bool = True) -> None:
    """Record breaches or kill-switch actions (``ts`` defaults to now); ``commit=False`` joins the caller's transaction."""
    now = datetime.now(timezone.utc)
    with conn.cursor() as cur:
        _insert_rows(cur, "risk_events", run_id, ({**e, "ts": e.get("ts") or now} for e in events), RISK_EVENT_COLUMNS)
    if commit:
        conn.commit()


def set_run_fields(conn, run_id: int, **fields) -> None:
    """Update a few columns of a run (e.g. the MLflow run id once it is known)."""
    if not fields:
        return
    assignments = ", ".join(f"{k} = %s" for k in fields)
    with conn.cursor() as cur:
        cur.execute(f"UPDATE runs SET {assignments} WHERE id = %s", (*fields.values(), run_id))
    conn.commit()


def merge_run_broker(conn, run_id: int, extra: dict) -> None:
    """Add keys to a run's ``broker`` JSON (figures known only once the run has happened)."""
    with conn.cursor() as cur:
        cur.execute("UPDATE runs SET broker = broker || %s WHERE id = %s", (Json(extra), run_id))
    conn.commit()


def list_runs(conn, limit: int = 50, strategy: str | None = None, sweep_id: str | None = None) -> list[dict]:
    """Recent runs with their headline metrics, newest first."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT r.id, r.run_type, r.mode, r.strategy, r.params, r.instruments, r.granularity, r.status,
                   r.started_at, r.duration_s, r.bars, r.mlflow_run_id, r.sweep_id,
                   m.metrics
              FROM runs r
              LEFT JOIN LATERAL (
                   SELECT jsonb_object_agg(metric, value) AS metrics FROM run_metrics WHERE run_id = r.id
              ) m ON true
             WHERE (%(strategy)s::text IS NULL OR r.strategy = %(strategy)s)
               AND (%(sweep)s::text IS NULL OR r.sweep_id = %(sweep)s)
             ORDER BY r.id DESC LIMIT %(limit)s
            """,
            {"strategy": strategy, "sweep": sweep_id, "limit": limit},
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) | {"metrics": row[-1] or {}} for row in cur.fetchall()]


def fetch_one(cur, query: str, args: tuple, missing: str) -> dict:
    """The one row ``query`` selects as {column: value}; NotFoundError(``missing``) when there is none."""
    cur.execute(query, args)
    row = cur.fetchone()
    if row is None:
        raise NotFoundError(missing)
    return dict(zip([d.name for d in cur.description], row))


def get_run(conn, run_id: int) -> dict:
    with conn.cursor() as cur:
        run = fetch_one(cur, "SELECT * FROM runs WHERE id = %s", (run_id,),
                        f"no run {run_id} in the risk database; list runs with `mbats runs`")
        cur.execute("SELECT metric, value FROM run_metrics WHERE run_id = %s", (run_id,))
        run["metrics"] = dict(cur.fetchall())
    return run


LINEAGE_FIELDS = ("data_from", "data_to", "data_sources", "code_version", "model_name", "model_version",
                  "model_run_id", "model_uri")


def run_lineage(conn, run_id: int) -> dict:
    """What a run was made of: its data range and sources, code version and model (None where none)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(LINEAGE_FIELDS)} FROM runs WHERE id = %s", (run_id,))
        row = cur.fetchone()
    if row is None:
        raise NotFoundError(f"no run {run_id} in the risk database; list runs with `mbats runs`")
    return dict(zip(LINEAGE_FIELDS, row))


def describe_sources(sources: list[dict] | None) -> str | None:
    """runs.data_sources in one line: `EUR_USD: oanda, 1,234 bars [load 7]; …`."""
    text = "; ".join(
        f"{d.get('instrument')}: {d.get('vendor')}{' (synthetic)' if d.get('is_synthetic') else ''}"
        + (f" {d['kind']}" if d.get("kind") else "") + f", {d.get('bars') or 0:,} bars"
        + (f" [load {d['load_id']}]" if d.get("load_id") else "") for d in sources or [])
    return text or None


def read_frame(conn, query: str, params: tuple) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def to_jsonable(value):
    """JSON-friendly values for `--json` output."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def dumps(value) -> str:
    return json.dumps(to_jsonable(value), indent=2, default=str)


# --- parameter sweeps (mbats.research.sweep): the sweep, its scores, the ranks of its runs ------------

_SCORE_COLUMNS = ("config_id", "params", "metrics", "trades", "trades_sha256", "seconds", "rank", "run_id", "agrees",
                  "difference")


def create_sweep(conn, *, sweep_id: str, strategy: str, instruments: list[str], granularity: str, grid: dict,
                 broker: dict, rank_by: str, top_n: int, tolerance_pct: float, configs: int, workers: int) -> None:
    """The sweep's row (status running); a second call with the same id (a retried task) changes nothing."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO sweeps (sweep_id, strategy, instruments, granularity, grid, broker, rank_by, top_n, "
            "tolerance_pct, configs, workers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (sweep_id) DO NOTHING",
            (sweep_id, strategy, instruments, granularity, Json(to_jsonable(grid)), Json(to_jsonable(broker)),
             rank_by, top_n, tolerance_pct, configs, workers))
    conn.commit()


def save_sweep_scores(conn, sweep_id: str, rows: list[dict]) -> None:
    """Insert or replace scores by ``config_id`` (a retried chunk writes the same rows again)."""
    if not rows:
        return
    with conn.cursor() as cur:
        execute_values(
            cur,
            f"INSERT INTO sweep_scores (sweep_id, {', '.join(_SCORE_COLUMNS)}) VALUES %s "
            "ON CONFLICT (sweep_id, config_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _SCORE_COLUMNS[1:]),
            [(sweep_id, r["config_id"], Json(to_jsonable(r["params"])), Json(to_jsonable(r["metrics"])),
              r.get("trades"), r.get("trades_sha256"), r.get("seconds"), r.get("rank"), r.get("run_id"),
              r.get("agrees"), Json(to_jsonable(r["difference"])) if r.get("difference") else None)
             for r in rows], page_size=5000)
    conn.commit()


def read_sweep(conn, sweep_id: str) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT sweep_id, strategy, rank_by, top_n, tolerance_pct, configs, status, mlflow_run_id "
                    "FROM sweeps WHERE sweep_id = %s", (sweep_id,))
        row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"sweep {sweep_id} is not in the risk database")
        return dict(zip(("sweep_id", "strategy", "rank_by", "top_n", "tolerance_pct", "configs", "status",
                         "mlflow_run_id"), row))


def read_sweep_scores(conn, sweep_id: str) -> list[dict]:
    """Every score of the sweep, in config_id order."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(_SCORE_COLUMNS)} FROM sweep_scores WHERE sweep_id = %s ORDER BY config_id",
                    (sweep_id,))
        return [dict(zip(_SCORE_COLUMNS, row)) for row in cur.fetchall()]


def finish_sweep(conn, sweep_id: str, vector_seconds: float | None, backtrader_seconds: float | None,
                 mlflow_run_id: str | None) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE sweeps SET status = 'finished', finished_at = now(), vector_seconds = %s, "
                    "backtrader_seconds = %s, mlflow_run_id = COALESCE(%s, mlflow_run_id) WHERE sweep_id = %s",
                    (vector_seconds, backtrader_seconds, mlflow_run_id, sweep_id))
    conn.commit()


def set_sweep_ranks(conn, sweep_id: str, ranked_run_ids: list[int]) -> None:
    """Each listed run's place (1 = best) as its ``sweep_rank`` metric; other runs of the sweep lose theirs."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM run_metrics WHERE metric = 'sweep_rank' AND run_id IN "
                    "(SELECT id FROM runs WHERE sweep_id = %s)", (sweep_id,))
        execute_values(cur, "INSERT INTO run_metrics (run_id, metric, value) VALUES %s",
                       [(run_id, "sweep_rank", float(i)) for i, run_id in enumerate(ranked_run_ids, 1)])
    conn.commit()


def discard_unfinished_sweep_runs(conn, sweep_id: str) -> list[dict]:
    """Delete the sweep's runs that never finished (a worker died mid-run; their rows cascade).

    Returns them (id, status, mlflow_run_id), so the caller can close their MLflow runs.
    """
    with conn.cursor() as cur:
        cur.execute("DELETE FROM runs WHERE sweep_id = %s AND status <> 'finished' RETURNING id, status, mlflow_run_id",
                    (sweep_id,))
        gone = [dict(zip(("id", "status", "mlflow_run_id"), row)) for row in cur.fetchall()]
    conn.commit()
    return gone


def set_data_sources(conn, run_ids: list[int], sources: list[dict]) -> None:
    """One provenance list for runs that all read the same bars (a sweep's re-runs)."""
    if not run_ids:
        return
    with conn.cursor() as cur:
        cur.execute("UPDATE runs SET data_sources = %s WHERE id = ANY(%s)", (Json(to_jsonable(sources)), run_ids))
    conn.commit()
