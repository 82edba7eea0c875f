"""Status, stop and flatten of running paper/live sessions, from anywhere that reaches the risk DB.

A stop or flatten is a row in ``live_control`` that the session polls (:class:`ControlPoller`),
not a signal to its pid: in the compose stack the runner is a Celery worker in one container and
the command comes from another (an Airflow task, a shell in the api-server, an operator's
laptop), where the pid means nothing. SIGTERM still works on the runner's own host.

- stop: the session ends after the bar in hand, positions and pending orders left as they are,
  run marked ``stopped``.
- flatten: the same, and the session closes its positions and cancels its pending orders on
  the way out. With no running session, :func:`flatten_venue` closes them directly at OANDA.
"""

from __future__ import annotations

import getpass
import logging
import socket
import threading
import time
from collections.abc import Callable

from mbats.errors import MbatsError

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
COMMANDS = ("stop", "flatten")


def requester() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


class ControlPoller:
    """A thread that asks the risk DB for this run's stop/flatten requests; ``on_command(command, who)``."""

    def __init__(self, run_id: int, on_command: Callable[[str, str], None], every: float = POLL_SECONDS) -> None:
        self.run_id, self.on_command, self.every = run_id, on_command, every
        self.command: str | None = None
        self.requested_by: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mbats-control-{run_id}", daemon=True)
        self._conn = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _run(self) -> None:
        while not self._done.wait(self.every):
            try:
                if self.poll_once():
                    return
            except Exception as exc:  # noqa: BLE001 - a DB hiccup must not stop trading; next poll retries
                log.warning("live control poll failed: %s", exc)
                self._conn = None

    def poll_once(self) -> bool:
        """Pick up the oldest pending request (a flatten wins over a stop); True once one was taken."""
        if self._conn is None:
            from mbats.db import connect

            self._conn = connect("risk")
            self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute("UPDATE live_control SET handled_at = now() WHERE run_id = %s AND handled_at IS NULL "
                        "RETURNING command, requested_by", (self.run_id,))
            rows = cur.fetchall()
        if not rows:
            return False
        commands = {c for c, _ in rows}
        self.command = "flatten" if "flatten" in commands else "stop"
        self.requested_by = next(who for c, who in rows if c == self.command)
        log.warning("operator %s of run %s requested by %s", self.command, self.run_id, self.requested_by)
        self.on_command(self.command, self.requested_by)
        return True


# --- the operator's side --------------------------------------------------------------------------
def _process_state(host: str | None, pid: int | None) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere (not checkable from here)."""
    if not pid or host != socket.gethostname():
        return None
    from mbats.risk.live import _process_alive

    return _process_alive(pid)


def sessions(conn, run_id: int | None = None) -> list[dict]:
    """The running paper/live sessions (or the one ``run_id``, whatever its status), newest first."""
    where = "r.id = %s" if run_id is not None else "r.status = 'running' AND r.run_type IN ('paper', 'live')"
    with conn.cursor() as cur:
        cur.execute(f"""
            SELECT r.id, r.strategy, r.mode, r.status, r.account, r.instruments, r.granularity, r.started_at, r.cash,
                   r.broker -> 'process' ->> 'host', (r.broker -> 'process' ->> 'pid')::int, r.broker ->> 'account_key',
                   e.ts, e.value, ks.tripped, ks.reason,
                   (SELECT count(*) FROM fills f WHERE f.run_id = r.id),
                   (SELECT array_agg(c.command ORDER BY c.id) FROM live_control c
                     WHERE c.run_id = r.id AND c.handled_at IS NULL)
            FROM runs r
            LEFT JOIN LATERAL (SELECT ts, value FROM equity WHERE run_id = r.id ORDER BY ts DESC LIMIT 1) e ON true
            LEFT JOIN live_kill_switch ks ON ks.account_key = r.broker ->> 'account_key'
            WHERE {where} ORDER BY r.id DESC""", (run_id,) if run_id is not None else ())
        rows = cur.fetchall()
        out = []
        for (rid, strategy, mode, status, account, instruments, gran, started, cash, host, pid, key, last_ts, nav,
             tripped, reason, fills, pending) in rows:
            cur.execute("SELECT DISTINCT ON (instrument) instrument, size, unrealized_pnl FROM positions "
                        "WHERE run_id = %s ORDER BY instrument, ts DESC", (rid,))
            positions = {i: {"units": s, "unrealized_pnl": u} for i, s, u in cur.fetchall()}
            out.append({
                "run_id": rid, "strategy": strategy, "mode": mode, "status": status, "account": account,
                "instruments": list(instruments or []), "granularity": gran, "started_at": started,
                "host": host, "pid": pid, "process_alive": _process_state(host, pid),
                "last_bar": last_ts, "nav": nav, "pnl": (nav - cash) if nav is not None and cash is not None else None,
                "positions": positions, "fills": fills,
                "kill_switch": {"account_key": key, "tripped": bool(tripped), "reason": reason},
                "pending_commands": list(pending or []),
            })
    if not conn.autocommit:
        conn.rollback()
    return out


def request(conn, run_id: int, command: str, who: str | None = None) -> dict:
    """Queue ``command`` for the running session ``run_id``; refuses runs that are not running."""
    if command not in COMMANDS:
        raise MbatsError(f"unknown command {command!r}: stop or flatten")
    found = sessions(conn, run_id)
    if not found:
        raise MbatsError(f"no run {run_id} in the risk DB")
    run = found[0]
    if run["status"] != "running" or run["mode"] not in ("paper", "live"):
        raise MbatsError(f"run {run_id} is not a running paper/live session (status {run['status']})")
    if run["process_alive"] is False:
        raise MbatsError(f"run {run_id}'s runner (pid {run['pid']}) is gone: `mbats live sweep-stale` marks it "
                         f"failed; `mbats live flatten --account … --yes` closes its positions at the venue")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO live_control (run_id, command, requested_by) VALUES (%s, %s, %s) "
                    "RETURNING id, requested_at", (run_id, command, who or requester()))
        req_id, at = cur.fetchone()
    conn.commit()
    return {"request_id": req_id, "run_id": run_id, "command": command, "requested_at": at}


def wait_for_end(conn, run_id: int, timeout: float) -> str:
    """Wait until the run is no longer ``running``; → its status (``running`` if the wait timed out)."""
    deadline = time.monotonic() + timeout
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE id = %s", (run_id,))
            status = cur.fetchone()[0]
        conn.rollback()
        if status != "running" or time.monotonic() >= deadline:
            return status
        time.sleep(0.5)


def flatten_venue(settings) -> list[dict]:
    """Close every position and cancel pending orders of the settings' account directly at OANDA. → left."""
    from mbats.venues.oanda.client import make_client
    from mbats.venues.oanda.execution import flatten_account

    client = make_client(settings)
    return flatten_account(client, client.require_account())


def act(command: str, run_id: int | None = None, wait: float = 120.0, venue_flatten: bool = False) -> dict | list:
    """One operator action, for the ``trading_control`` DAG and scripts: ``status`` (→ the sessions),
    ``stop`` / ``flatten`` of ``run_id`` (waits up to ``wait`` s for it to end), or ``flatten`` with no
    run id and ``venue_flatten=True``: close the account's positions directly at the venue."""
    from mbats.config import Settings
    from mbats.db import connect

    if command == "flatten" and run_id is None:
        if not venue_flatten:
            raise MbatsError("flatten without a run id closes the account's positions directly at the venue: "
                             "set venue_flatten (DAG param confirm_venue_flatten) to confirm")
        settings = Settings()
        left = flatten_venue(settings)
        return {"account": settings.oanda_account_id, "flat": not left, "positions_left": left}
    conn = connect("risk")
    try:
        if command == "status":
            return sessions(conn, run_id)
        if run_id is None:
            raise MbatsError(f"{command} needs the run id of a running session")
        out = request(conn, run_id, command, who=f"airflow:{requester()}")
        if wait > 0:
            out["status"] = wait_for_end(conn, run_id, wait)
            if out["status"] == "running":
                raise MbatsError(f"run {run_id} is still running {wait:g} s after the {command} request")
        return out
    finally:
        conn.close()
