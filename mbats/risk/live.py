"""The risk database's rows of live and paper sessions, written as they happen.

The run, each order/fill/trade, a snapshot every bar, breaches, the per-account kill switch and the
stale-run sweep. Column lists are the ones :mod:`mbats.risk.store` writes for backtests.

One autocommit connection: each event is its own statement, so the live dashboard sees it at
once and a killed runner loses at most the event it was writing. Rows are keyed by broker-side
ids (client order ids, OANDA transaction ids) and written with upserts, so a restarted runner
that resumes the same run rewrites nothing twice.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

from psycopg2.extras import Json

from mbats.kernel.limits import Breach
from mbats.risk import store as risk_store
from mbats.risk.store import (EQUITY_COLUMNS, FILL_COLUMNS, FINANCING_COLUMNS, ORDER_COLUMNS, POSITION_COLUMNS, RISK_EVENT_COLUMNS,
                              TRADE_COLUMNS)


class LiveStore:
    def __init__(self, conn) -> None:
        self.conn = conn
        conn.autocommit = True
        self.run_id: int | None = None
        self.peak: float | None = None

    # --- the run ----------------------------------------------------------------------------
    def open_run(self, *, session_key: str | None, **meta) -> tuple[int, bool]:
        """Resume the unfinished run of ``session_key`` (same id), or create one. → (run_id, resumed)."""
        if session_key:
            with self.conn.cursor() as cur:
                cur.execute("SELECT id FROM runs WHERE session_key = %s AND status IN ('running', 'failed') "
                            "ORDER BY id DESC LIMIT 1", (session_key,))
                row = cur.fetchone()
                if row:
                    self.run_id = row[0]
                    cur.execute("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL WHERE id = %s",
                                (self.run_id,))
                    cur.execute("SELECT max(value) FROM equity WHERE run_id = %s", (self.run_id,))
                    self.peak = cur.fetchone()[0]
                    return self.run_id, True
        self.run_id = risk_store.create_run(self.conn, **meta)
        if session_key:
            risk_store.set_run_fields(self.conn, self.run_id, session_key=session_key)
        return self.run_id, False

    def last_bar_ts(self) -> datetime | None:
        """The last bar this run traded on (its last account snapshot)."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT max(ts) FROM equity WHERE run_id = %s", (self.run_id,))
            return cur.fetchone()[0]

    def finish(self, status: str, bars: int, data_from=None, data_to=None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                "UPDATE runs SET status = %s, finished_at = now(), duration_s = extract(epoch FROM now() - started_at), "
                "bars = coalesce(bars, 0) + %s, data_from = coalesce(data_from, %s), data_to = coalesce(%s, data_to) "
                "WHERE id = %s", (status, bars, data_from, data_to, self.run_id))

    def fail(self, error: str) -> None:
        risk_store.mark_failed(self.conn, self.run_id, error)  # falls back to a fresh connection

    # --- events -----------------------------------------------------------------------------
    def _upsert(self, table: str, cols: tuple[str, ...], key: tuple[str, ...], row: dict, update: bool = True) -> None:
        names = ("run_id", *cols)
        values = [self.run_id, *(risk_store._sql_value(row.get(c)) for c in cols)]
        action = "DO NOTHING" if not update else \
            "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in key)
        with self.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
                        f"ON CONFLICT (run_id, {', '.join(key)}) {action}", values)

    def upsert_order(self, row: dict) -> None:
        self._upsert("orders", ORDER_COLUMNS, ("order_ref",), row)

    def set_order_status(self, order_ref: str, status: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute("UPDATE orders SET status = %s, updated_at = now() WHERE run_id = %s AND order_ref = %s",
                        (status, self.run_id, order_ref))

    def insert_fill(self, row: dict) -> None:
        self._upsert("fills", FILL_COLUMNS, ("fill_id",), row, update=False)

    def insert_financing(self, rows: list[dict]) -> None:
        """The broker's DAILY_FINANCING rows; one per (rollover, instrument), so a replay adds none."""
        for row in rows:
            self._upsert("financing", FINANCING_COLUMNS, ("ts", "instrument"), row, update=False)

    def upsert_trade(self, row: dict) -> None:
        self._upsert("trades", TRADE_COLUMNS, ("trade_ref",), row)

    def snapshot(self, ts: datetime, cash: float, value: float, positions: list[dict]) -> None:
        """Account value and open positions as of the bar just processed."""
        self.peak = value if self.peak is None else max(self.peak, value)
        drawdown = 100.0 * (value / self.peak - 1.0) if self.peak else 0.0
        self._upsert("equity", EQUITY_COLUMNS, ("ts",), {"ts": ts, "cash": cash, "value": value, "drawdown_pct": drawdown})
        for p in positions:
            self._upsert("positions", POSITION_COLUMNS, ("ts", "instrument"), {"ts": ts, **p})

    def risk_event(self, breach: Breach) -> None:
        risk_store.add_risk_events(self.conn, self.run_id, [vars(breach)])

    def note(self, **fields) -> None:
        """Merge facts about the session (reconciliation, restarts) into runs.broker."""
        risk_store.merge_run_broker(self.conn, self.run_id, fields)

    def noted(self, key: str):
        with self.conn.cursor() as cur:
            cur.execute("SELECT broker ->> %s FROM runs WHERE id = %s", (key, self.run_id))
            row = cur.fetchone()
            return row[0] if row else None

    def data_sources(self) -> list[dict]:
        """runs.data_sources as recorded so far (a resumed run keeps its earlier sessions' entries)."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT data_sources FROM runs WHERE id = %s", (self.run_id,))
            row = cur.fetchone()
            return list(row[0] or []) if row else []

    def set_data_sources(self, sources: list[dict]) -> None:
        risk_store.set_run_fields(self.conn, self.run_id, data_sources=Json(sources))

    # --- reads (reconciliation) ---------------------------------------------------------------
    def open_orders(self) -> list[dict]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT order_ref, instrument, status FROM orders WHERE run_id = %s "
                        "AND status IN ('created', 'submitted', 'accepted', 'partial')", (self.run_id,))
            return [dict(zip(("order_ref", "instrument", "status"), r)) for r in cur.fetchall()]

    def open_trades(self) -> dict[str, dict]:
        """Instrument → the run's open trade row (the position the runner last knew)."""
        cols = ("trade_ref", "instrument", "direction", "size", "entry_ts", "entry_price")
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(cols)} FROM trades WHERE run_id = %s AND is_open ORDER BY entry_ts",
                        (self.run_id,))
            return {r[1]: dict(zip(cols, r)) for r in cur.fetchall()}

    def last_positions(self) -> dict[str, float]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT DISTINCT ON (instrument) instrument, size FROM positions WHERE run_id = %s "
                        "ORDER BY instrument, ts DESC", (self.run_id,))
            return {i: s for i, s in cur.fetchall() if s}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale_runs(conn) -> list[tuple[int, str]]:
    """Mark ``failed`` the running paper/live runs of this host whose process is gone (kill -9, OOM)."""
    host = socket.gethostname()
    with conn.cursor() as cur:
        cur.execute("SELECT id, (broker -> 'process' ->> 'pid')::int FROM runs WHERE status = 'running' "
                    "AND broker -> 'process' ->> 'host' = %s", (host,))
        stale = [(run_id, pid) for run_id, pid in cur.fetchall() if pid is not None and pid != os.getpid()
                 and not _process_alive(pid)]
        out = []
        for run_id, pid in stale:
            why = f"the runner process (pid {pid} on {host}) is gone; marked by the stale-run sweep"
            cur.execute("UPDATE runs SET status = 'failed', error = %s, finished_at = now(), "
                        "duration_s = extract(epoch FROM now() - started_at) WHERE id = %s AND status = 'running'",
                        (why, run_id))
            out.append((run_id, why))
    if not conn.autocommit:
        conn.commit()
    return out


# --- the kill switch (one row per account, survives restarts) ----------------------------------
def account_key(settings) -> str:
    """The kill switch's account: environment and account id (a simulator is an account of its own)."""
    key = f"{settings.oanda_environment}:{settings.oanda_account_id}"
    return f"{key}@{settings.oanda_sim_url}" if settings.oanda_environment == "sim" else key


class KillSwitchStore:
    """The tripped flag and the day's NAV baseline of one account in ``live_kill_switch``."""

    def __init__(self, conn, key: str) -> None:
        self.conn, self.key = conn, key

    def load(self) -> dict:
        with self.conn.cursor() as cur:
            cur.execute("SELECT day, day_start_nav, tripped, tripped_at, reason FROM live_kill_switch "
                        "WHERE account_key = %s", (self.key,))
            row = cur.fetchone()
        keys = ("day", "day_start_nav", "tripped", "tripped_at", "reason")
        return dict(zip(keys, row)) if row else dict.fromkeys(keys) | {"tripped": False}

    def save_baseline(self, day, nav: float) -> None:
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO live_kill_switch (account_key, day, day_start_nav) VALUES (%s, %s, %s) "
                        "ON CONFLICT (account_key) DO UPDATE SET day = EXCLUDED.day, "
                        "day_start_nav = EXCLUDED.day_start_nav, updated_at = now()", (self.key, day, nav))

    def trip(self, reason: str, run_id: int | None) -> None:
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO live_kill_switch (account_key, tripped, tripped_at, tripped_run_id, reason) "
                        "VALUES (%s, true, now(), %s, %s) ON CONFLICT (account_key) DO UPDATE SET tripped = true, "
                        "tripped_at = now(), tripped_run_id = EXCLUDED.tripped_run_id, reason = EXCLUDED.reason, "
                        "updated_at = now()", (self.key, run_id, reason))


def reset_kill_switch(conn, key: str, who: str, note: str | None = None) -> dict | None:
    """Clear a tripped kill switch; record who and when (row + a ``risk_events`` entry). → the old state."""
    with conn.cursor() as cur:
        cur.execute("SELECT tripped, tripped_at, tripped_run_id, reason FROM live_kill_switch "
                    "WHERE account_key = %s FOR UPDATE", (key,))
        row = cur.fetchone()
        if row is None or not row[0]:
            conn.rollback()
            return None
        cur.execute("UPDATE live_kill_switch SET tripped = false, reset_at = now(), reset_by = %s, "
                    "day = NULL, day_start_nav = NULL, updated_at = now() WHERE account_key = %s", (who, key))
        detail = f"kill switch of {key} reset by {who} (tripped {row[1]:%Y-%m-%d %H:%M:%S %Z}: {row[3]})"
        if note:
            detail += f"; note: {note}"
    risk_store.add_risk_events(conn, row[2], [{"rule": "kill_switch_reset", "instrument": None, "detail": detail,
                                               "action": "reset"}], commit=False)
    conn.commit()
    return {"tripped_at": row[1], "run_id": row[2], "reason": row[3]}

