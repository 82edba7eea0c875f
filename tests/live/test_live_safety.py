"""Safety nets around a live session: the kill switch survives restarts, signals stop a run cleanly
with a status and an exit code, dead runners are swept, and failures are recorded even when the
database connection is what failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig
from mbats.risk.live import sweep_stale_runs
from mbats.live.session import KillSwitchTripped, run
from tests.live.conftest import client_orders_at_sim, net_units, risk_rows, sim_env, sim_settings

RUNNER = [sys.executable, "-m", "mbats.cli.live", "live_probe", "-i", "EUR_USD", "-g", "M10", "--mode", "paper",
          "--warmup", "5", "--sim-step", "--json"]
COMMANDS = [sys.executable, "-m", "mbats.cli.live"]


def _nav(server) -> float:
    return float(server.sim.account.summary()["NAV"])


def _probe(bars: int, **params) -> LiveConfig:
    return LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "10000", **params},
                      granularity="M10", max_bars=bars, warmup=3, sim_step=True)


def test_kill_switch_survives_restarts_until_reset_and_checks_before_the_strategy(sim, risk_conn):
    server = sim(spread_pips=40.0)  # every 10,000 units bought costs 40 USD of spread at once
    settings = sim_settings(server)
    limits = RiskLimits(max_daily_loss=100.0)
    start_nav = _nav(server)

    first = run(_probe(2), risk=limits, settings=settings)  # two orders: ~80 USD lost, under the limit
    assert first.status == "finished" and len(client_orders_at_sim(server)) == 2
    # a restart the same day keeps the day's baseline: it trips after one more order, not after 100 USD more
    second = run(_probe(30), risk=limits, settings=settings)
    assert second.status == "stopped" and second.exit_code == 3
    assert start_nav - _nav(server) < 100.0 + 40.0 + 30.0  # the limit, one order's spread, market noise
    assert net_units(server) == 0  # flattened
    # the check runs when the bar arrives, before the strategy: no order shares the bar of the flatten
    txns = server.sim.account.transactions
    flatten_time = next(t["time"] for t in txns if t.get("reason") == "POSITION_CLOSEOUT")
    assert [t for t in txns if t.get("reason") == "CLIENT_ORDER" and t["time"] == flatten_time] == []
    (tripped, reason), = risk_rows(risk_conn, "SELECT tripped, reason FROM live_kill_switch WHERE account_key LIKE %s",
                               f"sim:%@{server.url}")
    assert tripped and "below the day's start" in reason

    sent = len(client_orders_at_sim(server))
    with pytest.raises(KillSwitchTripped, match="reset-kill-switch"):  # a restart stays stopped
        run(_probe(5), risk=limits, settings=settings)
    assert len(client_orders_at_sim(server)) == sent
    env = sim_env(server)
    refused = subprocess.run(RUNNER + ["--bars", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and refused.stderr.startswith("error: the kill switch") and "Traceback" not in refused.stderr

    reset = subprocess.run(COMMANDS + ["reset-kill-switch", "--by", "alice", "--note", "checked the account"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["reset_by"] == "alice"
    (reset_by, reset_at), = risk_rows(risk_conn, "SELECT reset_by, reset_at FROM live_kill_switch WHERE account_key "
                                             "LIKE %s", f"sim:%@{server.url}")
    assert reset_by == "alice" and reset_at is not None
    events = risk_rows(risk_conn, "SELECT detail FROM risk_events WHERE rule = 'kill_switch_reset' AND detail LIKE %s",
                   f"%{server.url}%")
    assert len(events) == 1 and "alice" in events[0][0] and "checked the account" in events[0][0]
    again = subprocess.run(COMMANDS + ["reset-kill-switch"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "not tripped" in again.stderr

    third = run(_probe(1), risk=limits, settings=settings)  # trades again after the reset
    assert third.status == "finished" and len(client_orders_at_sim(server)) == sent + 1


def _start(server, session: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(RUNNER + ["--bars", "500", "--session", session, "-p", "every=2"],
                            env=sim_env(server, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_orders(proc, server, n: int) -> None:
    deadline = time.monotonic() + 120
    while len(client_orders_at_sim(server)) < n:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the runner sent no orders"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, on_signal, code", [(signal.SIGTERM, "leave", 143), (signal.SIGINT, "flatten", 130)])
def test_a_signal_stops_the_run_cleanly_with_status_and_exit_code(sim, risk_conn, sig, on_signal, code):
    server = sim()
    session = f"signal-{sig.name}"
    proc = _start(server, session, MBATS_LIVE_ON_SIGNAL=on_signal)
    try:
        _wait_for_orders(proc, server, 2)
        held = net_units(server)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "stopped"
    (status, stop), = risk_rows(risk_conn, "SELECT status, broker -> 'stop' FROM runs WHERE session_key = %s", session)
    assert status == "stopped" and stop["signal"] == sig.name and stop["positions"] == on_signal
    if on_signal == "leave":
        assert net_units(server) >= held > 0  # positions left as they were
    else:
        assert net_units(server) == 0
        assert not [o for o in server.sim.account.orders.values() if o.state == "PENDING"]


def test_stale_run_sweep_marks_a_killed_runner_failed(sim, risk_conn):
    server = sim()
    proc = _start(server, "stale")
    try:
        _wait_for_orders(proc, server, 1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    (run_id, status), = risk_rows(risk_conn, "SELECT id, status FROM runs WHERE session_key = 'stale'")
    assert status == "running"  # nobody could record anything
    risk_conn.autocommit = True
    try:
        swept = dict(sweep_stale_runs(risk_conn))
    finally:
        risk_conn.autocommit = False
    assert run_id in swept
    (status, error), = risk_rows(risk_conn, "SELECT status, error FROM runs WHERE id = %s", run_id)
    assert status == "failed" and f"pid {proc.pid}" in error


def test_a_backtest_whose_database_connection_dies_fails_with_the_real_error(risk_conn, monkeypatch):
    from mbats.backtest.runner import BacktestSpec, run_backtest
    from mbats.sim import synthetic_bars

    bars = {"EUR_USD": synthetic_bars("EUR_USD", "2024-03-04", "2024-03-06", "M10", seed=3)}
    before = risk_rows(risk_conn, "SELECT coalesce(max(id), 0) FROM runs")[0][0]
    monkeypatch.setenv("PGAPPNAME", "mbats-db-drop-victim")  # the backtest's own connection gets this name
    with pytest.raises(psycopg2.OperationalError):  # the real error, not "connection already closed"
        run_backtest(BacktestSpec("db_drop", ["EUR_USD"], granularity="M10", params={"at": 5}), track=False,
                     bars=bars, write_report=False)
    monkeypatch.delenv("PGAPPNAME")
    (status, error, pid), = risk_rows(risk_conn, "SELECT status, error, broker -> 'process' ->> 'pid' FROM runs "
                                             "WHERE id > %s AND strategy = 'db_drop'", before)
    assert status == "failed" and "OperationalError" in error
    assert int(pid) == os.getpid()  # backtests note their process too, for the stale-run sweep


def test_the_sweep_fails_a_backtest_whose_process_died_and_leaves_live_ones(risk_conn):
    from mbats.risk import store

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = __import__("socket").gethostname()
    gone = store.create_run(risk_conn, run_type="backtest", mode="backtest", strategy="x", params={},
                            instruments=["EUR_USD"], granularity="M1", cash=1.0, code_version="t",
                            broker={"process": {"pid": int(dead.stdout), "host": host}})
    alive = store.create_run(risk_conn, run_type="backtest", mode="backtest", strategy="x", params={},
                             instruments=["EUR_USD"], granularity="M1", cash=1.0, code_version="t",
                             broker={"process": {"pid": os.getppid(), "host": host}})
    swept = subprocess.run(COMMANDS + ["sweep-stale"], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ))
    assert swept.returncode == 0, swept.stderr
    assert gone in {r["run_id"] for r in json.loads(swept.stdout)}
    statuses = dict(risk_rows(risk_conn, "SELECT id, status FROM runs WHERE id IN (%s, %s)", gone, alive))
    assert statuses == {gone: "failed", alive: "running"}
    store.mark_failed(risk_conn, alive, "test over")  # leave no run `running` behind
