"""Restart recovery with the runner as a real subprocess: kill -9 mid-session, and a crash between
submitting an order and recording its acknowledgement. The simulator runs in the test process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from tests.live.conftest import client_orders_at_sim, net_units, risk_rows, sim_env

RUNNER = [sys.executable, "-m", "mbats.cli.live", "live_probe", "-i", "EUR_USD", "-g", "M10", "--mode", "paper",
          "--warmup", "5", "--sim-step", "--json"]


CRASHING_RUNNER = [sys.executable, str(Path(__file__).with_name("crash_after_submit.py")), *RUNNER[3:]]


def _start(server, session: str, bars: int, every: int = 2, crash_after_submit: bool = False,
           **env: str) -> subprocess.Popen:
    runner = CRASHING_RUNNER if crash_after_submit else RUNNER
    return subprocess.Popen(runner + ["--bars", str(bars), "--session", session, "-p", f"every={every}"],
                            env=sim_env(server, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 180) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _session_runs(conn, session: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT id, status, mode FROM runs WHERE session_key = %s", (session,))
        return cur.fetchall()


def _db_orders(conn, run_id: int) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT client_order_id FROM orders WHERE run_id = %s AND status = 'completed'", (run_id,))
        return [r[0] for r in cur.fetchall()]


def test_kill_9_mid_session_then_restart_reconciles_without_duplicate_orders(sim, risk_conn):
    server = sim()
    first = _start(server, "kill9", bars=60)
    try:
        deadline = time.monotonic() + 120
        while len(client_orders_at_sim(server)) < 3:
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the runner sent no orders"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    held_at_kill = net_units(server)
    assert held_at_kill >= 3000

    summary = _finish(_start(server, "kill9", bars=6))
    assert summary["resumed"] is True
    (run_id, status, mode), = _session_runs(risk_conn, "kill9")  # one run, resumed, not a second one
    assert (run_id, status, mode) == (summary["run_id"], "finished", "paper")
    assert summary["reconciliation"]["broker_positions"]["EUR_USD"] == held_at_kill

    sent = client_orders_at_sim(server)
    assert [cid for cid, n in Counter(sent).items() if n > 1] == []  # zero duplicate client order ids
    assert net_units(server) == 1000 * len(sent)  # every order the simulator got was sent exactly once
    assert sorted(_db_orders(risk_conn, run_id)) == sorted(sent)  # and the risk DB knows each of them
    with risk_conn.cursor() as cur:
        cur.execute("SELECT size FROM positions WHERE run_id = %s ORDER BY ts DESC LIMIT 1", (run_id,))
        assert cur.fetchone()[0] == net_units(server)
        cur.execute("SELECT data_sources FROM runs WHERE id = %s", (run_id,))
        sources = cur.fetchone()[0]
    # both sessions' sources are kept: the killed one's stream up to its last bar, then the restart's
    streams = [s for s in sources if s["kind"] == "live-stream"]
    assert [s["kind"] for s in sources] == ["live-backfill", "live-stream"] * 2
    assert streams[0]["bars"] >= 1 and streams[1]["bars"] >= 5  # of 6 live bars, the re-decided one came with the backfill
    assert pd.Timestamp(streams[0]["last"]) < pd.Timestamp(streams[1]["first"])


def test_killed_between_submit_and_ack_the_restart_adopts_instead_of_resending(sim, risk_conn):
    server = sim()
    crashed = _start(server, "ack", bars=10, crash_after_submit=True)
    crashed.communicate(timeout=180)
    assert crashed.returncode == -signal.SIGKILL
    sent_before = client_orders_at_sim(server)
    assert len(sent_before) == 1 and net_units(server) == 1000  # OANDA filled it; the runner never saw the ack

    summary = _finish(_start(server, "ack", bars=4))
    assert summary["resumed"] is True
    assert summary["reconciliation"]["position_differences"]  # DB said flat, broker holds 1,000: logged
    sent = client_orders_at_sim(server)
    assert sent[0] == sent_before[0] and Counter(sent)[sent_before[0]] == 1  # re-decided, adopted, not resent
    assert [cid for cid, n in Counter(sent).items() if n > 1] == []
    assert net_units(server) == 1000 * len(sent)
    (run_id, _, _), = _session_runs(risk_conn, "ack")
    assert sent_before[0] in _db_orders(risk_conn, run_id)


def _sim_exit_fills(server) -> list[dict]:
    return [t for t in server.sim.account.transactions if t["type"] == "ORDER_FILL"
            and t["reason"] in ("STOP_LOSS_ORDER", "TAKE_PROFIT_ORDER", "TRAILING_STOP_LOSS_ORDER")]


def test_kill_9_with_a_bracket_open_and_its_exit_filled_while_down(sim, risk_conn):
    """The restart replays the broker's transactions: the risk DB ends equal to the broker (fills, trades,
    P&L, position), and the bars that closed while the runner was down are history, not signals."""
    server = sim(spread_pips=0.2)
    proc = subprocess.Popen(RUNNER + ["--bars", "500", "--session", "bracket-crash", "-p", "every=6",
                                      "-p", "bracket=true", "-p", "pips=10"],
                            env=sim_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(t["type"] == "ORDER_FILL" for t in server.sim.account.transactions):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the runner sent no bracket"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not _sim_exit_fills(server), "the bracket closed before the kill; widen pips"
    for _ in range(300):  # the runner is down: the market moves on until the stop or the target fills
        server.sim.advance(1)
        if _sim_exit_fills(server):
            break
    assert _sim_exit_fills(server) and net_units(server) == 0
    server.sim.advance(3)  # three more bars close while nobody is watching
    restart_at = pd.Timestamp(server.sim.now, tz="UTC")
    (run_id, in_progress), = risk_rows(risk_conn, "SELECT id, broker ->> 'bar_in_progress' FROM runs "
                                              "WHERE session_key = 'bracket-crash'")
    before = set(client_orders_at_sim(server))

    # the restart trades on every bar: only bars completing after it (and the bar it died on) may order
    summary = _finish(_start(server, "bracket-crash", bars=2, every=1))
    assert summary["resumed"] is True and summary["run_id"] == run_id
    assert summary["reconciliation"]["replayed"]["fills"] >= 1
    allowed = {pd.Timestamp(in_progress)} if in_progress else set()
    for cid in set(client_orders_at_sim(server)) - before:
        bar = pd.Timestamp(cid.split(".")[1], tz="UTC")
        assert bar >= restart_at or bar in allowed, f"order {cid} for a bar that closed while the runner was down"

    # the risk DB equals the broker
    txns = server.sim.account.transactions
    sim_fills = {int(t["id"]): (float(t["units"]), float(t["price"])) for t in txns if t["type"] == "ORDER_FILL"}
    db_fills = {f: (s, p) for f, s, p in risk_rows(risk_conn, "SELECT fill_id, size, price FROM fills WHERE run_id = %s",
                                               run_id)}
    assert db_fills == sim_fills
    closed_at_sim = [t for t in server.sim.account.trades.values() if t.state == "CLOSED"]
    db_closed = risk_rows(risk_conn, "SELECT pnl FROM trades WHERE run_id = %s AND NOT is_open", run_id)
    assert len(db_closed) == len(closed_at_sim) == 1
    assert db_closed[0][0] == pytest.approx(sum(t.realized_pl for t in closed_at_sim), abs=0.01)
    statuses = dict(risk_rows(risk_conn, "SELECT order_ref, status FROM orders WHERE run_id = %s AND "
                                     "(order_ref LIKE '%%.sl%%' OR order_ref LIKE '%%.tp%%')", run_id))
    assert sorted(statuses.values()) == ["canceled", "completed"]
    last_size, = risk_rows(risk_conn, "SELECT size FROM positions WHERE run_id = %s ORDER BY ts DESC LIMIT 1", run_id)[0]
    assert last_size == net_units(server)
