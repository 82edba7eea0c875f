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

from tests.live.conftest import client_orders_at_sim, net_units, sim_env

RUNNER = [sys.executable, "-m", "mbats.live.cli", "live_probe", "-i", "EUR_USD", "-g", "M10", "--mode", "paper",
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
