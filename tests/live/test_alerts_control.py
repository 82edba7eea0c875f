"""Alerts (apprise to a real loopback receiver) and remote control of running sessions
(`mbats live status | stop | flatten` against real runner processes and the simulator)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pandas as pd
import pytest
from pydantic import SecretStr

from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig
from mbats.live.session import run
from mbats.sim import Fault
from tests.conftest import ALERT_TOKEN as TOKEN
from tests.conftest import free_port
from tests.live.conftest import fills_at_sim, net_units, risk_rows, sim_env, sim_settings



def _with_alerts(settings, url: str, **extra):
    return settings.model_copy(update={"alert_urls": SecretStr(url), **extra})


def _titles(received: list[dict], word: str) -> list[dict]:
    return [r for r in received if word in r["title"]]


def test_fills_and_risk_breaches_are_alerted_and_the_risk_webhook_still_gets_its_json(sim, receiver, webhook):
    url, received = receiver
    hook_url, hook_received = webhook
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "1000"}, granularity="M10",
                     max_bars=5, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(max_units=2500, webhook_url=hook_url),
                 settings=_with_alerts(sim_settings(server), url))

    assert all(r["path"] == f"/alerts/{TOKEN}" for r in received)
    fills = _titles(received, "fill:")
    sim_fills = fills_at_sim(server)
    assert len(fills) == len(sim_fills) == 2
    assert all(f["type"] == "info" and "EUR_USD +1,000" in f["title"] and f"Run {result.run_id} bought" in f["message"]
               for f in fills)
    assert {str(t["id"]) for t in sim_fills} == {f["message"].split("OANDA fill ")[1].rstrip(").") for f in fills}
    breaches = _titles(received, "risk max_units blocked")
    assert breaches and all(b["type"] == "warning" and f"run {result.run_id}" in b["title"] for b in breaches)
    assert "could hold +3000 units" in breaches[0]["message"]
    # the legacy webhook (absorbed into the alerter) still receives each breach as its JSON body
    assert len(hook_received) == len(breaches) and {h["rule"] for h in hook_received} == {"max_units"}


def test_a_kill_switch_trip_is_one_failure_alert(sim, receiver):
    url, received = receiver
    server = sim(spread_pips=40.0)
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "10000"}, granularity="M10",
                     max_bars=30, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(max_daily_loss=100.0), settings=_with_alerts(sim_settings(server), url))
    assert result.status == "stopped"
    tripped = _titles(received, "kill switch tripped")
    assert len(tripped) == 1 and tripped[0]["type"] == "failure"
    assert f"run {result.run_id}" in tripped[0]["title"] and "flattening and stopping" in tripped[0]["message"]
    assert not _titles(received, "risk max_daily_loss")  # announced once, as the kill switch


def test_a_failed_run_is_alerted(sim, receiver, risk_conn):
    url, received = receiver
    server = sim()
    server.sim.faults.add(Fault(kind="status", path="/candles", status=500, count=1000))
    cfg = LiveConfig("live_probe", ["EUR_USD"], granularity="M10", max_bars=3, warmup=3, sim_step=True)
    with pytest.raises(Exception):
        run(cfg, risk=RiskLimits(), settings=_with_alerts(sim_settings(server), url))
    (run_id, error), = risk_rows(risk_conn, "SELECT id, error FROM runs WHERE status = 'failed' ORDER BY id DESC "
                                            "LIMIT 1")
    failed = _titles(received, f"run {run_id} failed")
    assert len(failed) == 1 and failed[0]["type"] == "failure"
    assert "live_probe EUR_USD" in failed[0]["title"] and error.split(":")[0] in failed[0]["message"]


def test_an_alert_receiver_that_is_down_never_breaks_trading_and_its_token_is_not_logged(sim, caplog):
    server = sim()
    dead = f"json://127.0.0.1:{free_port()}/alerts/{TOKEN} bogus://{TOKEN}"
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "2", "units": "1000"}, granularity="M10",
                     max_bars=4, warmup=3, sim_step=True)
    with caplog.at_level(logging.DEBUG):
        result = run(cfg, risk=RiskLimits(), settings=_with_alerts(sim_settings(server), dead))
    assert result.status == "finished" and len(fills_at_sim(server)) == 2
    assert "could not be delivered" in caplog.text and "is not an apprise URL" in caplog.text
    assert TOKEN not in caplog.text


def test_alert_events_filter_what_is_sent(sim, receiver):
    url, received = receiver
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "1000"}, granularity="M10",
                     max_bars=4, warmup=3, sim_step=True)
    run(cfg, risk=RiskLimits(max_units=1500), settings=_with_alerts(sim_settings(server), url, alert_events="risk"))
    assert fills_at_sim(server) and not _titles(received, "fill:")
    assert _titles(received, "risk max_units")


# --- remote control, with the runner as a real process ----------------------------------------------
RUNNER = [sys.executable, "-m", "mbats.cli.live", "live_probe", "-i", "EUR_USD", "-g", "M10", "--mode", "paper",
          "--warmup", "5", "--json", "-p", "every=1", "-p", "units=1000"]


def _cli(server, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbats.cli.main", *args], env=sim_env(server),
                          capture_output=True, text=True, timeout=timeout)


def _runner_with_a_position(server, session: str, risk_conn) -> tuple[subprocess.Popen, int]:
    """A runner on the manual-clock simulator, advanced bar by bar until it holds 2,000 units."""
    proc = subprocess.Popen(RUNNER + ["--session", session], env=sim_env(server), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not risk_rows(risk_conn, "SELECT 1 FROM runs WHERE session_key = %s AND broker ? 'live_after'", session):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the runner did not start"
        time.sleep(0.2)
    while net_units(server) < 2000:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the runner sent no orders"
        server.sim.advance(1)
        time.sleep(1.0)
    (run_id,), = risk_rows(risk_conn, "SELECT id FROM runs WHERE session_key = %s", session)
    while not risk_rows(risk_conn, "SELECT 1 FROM positions WHERE run_id = %s AND size >= 2000", run_id):
        assert time.monotonic() < deadline, "no position snapshot"
        server.sim.advance(1)
        time.sleep(1.0)
    return proc, run_id


def _end(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_status_then_stop_leaves_positions_and_flatten_at_the_venue_needs_yes(sim, risk_conn):
    server = sim(speed="manual")
    proc, run_id = _runner_with_a_position(server, "ctl-stop", risk_conn)
    try:
        status = _cli(server, "live", "status", "--json")
        assert status.returncode == 0, status.stderr
        mine, = [s for s in json.loads(status.stdout) if s["run_id"] == run_id]
        assert (mine["pid"], mine["process_alive"], mine["status"], mine["mode"]) == \
            (proc.pid, True, "running", "paper")
        assert mine["positions"]["EUR_USD"]["units"] >= 2000 and mine["fills"] >= 2
        assert mine["kill_switch"]["tripped"] is False and mine["kill_switch"]["account_key"].startswith("sim:")
        assert mine["last_bar"] and mine["nav"] is not None and mine["pnl"] is not None
        table = _cli(server, "live", "status")
        assert str(run_id) in table.stdout and "EUR_USD +" in table.stdout

        held = net_units(server)
        stop = _cli(server, "live", "stop", str(run_id), "--wait", "180")
        assert stop.returncode == 0, stop.stderr
        assert json.loads(stop.stdout)["status"] == "stopped"
    except BaseException:
        proc.terminate()
        raise
    summary = _end(proc)
    assert summary["status"] == "stopped" and summary["stop_reason"].startswith("operator stop")
    assert net_units(server) == held  # a stop leaves the position
    # the Live dashboard's view shows the session's state
    (runner, kill_switch, stop_reason, pending), = risk_rows(
        risk_conn, "SELECT runner, kill_switch, stop_reason, pending_command FROM dash.live_pnl_today "
                   "WHERE run_id = %s", run_id)
    assert runner.endswith(f":{proc.pid}") and kill_switch == "ok" and pending is None
    assert stop_reason.startswith("operator stop")
    assert _cli(server, "live", "status", "--json").stdout.strip() in ("[]", "") or \
        run_id not in [s["run_id"] for s in json.loads(_cli(server, "live", "status", "--json").stdout)]
    again = _cli(server, "live", "stop", str(run_id))
    assert again.returncode == 1 and again.stderr.startswith("error:") and "not a running" in again.stderr

    refused = _cli(server, "live", "flatten")
    assert refused.returncode == 2 and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert net_units(server) == held
    direct = _cli(server, "live", "flatten", "--yes")
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout)["flat"] is True and net_units(server) == 0


def test_flatten_through_the_running_session_closes_and_stops(sim, risk_conn):
    server = sim(speed="manual")
    proc, run_id = _runner_with_a_position(server, "ctl-flatten", risk_conn)
    try:
        flat = _cli(server, "live", "flatten", str(run_id), "--wait", "180")
        assert flat.returncode == 0, flat.stderr
        out = json.loads(flat.stdout)
        assert out["status"] == "stopped" and out["session"]["pending_commands"] == []
    except BaseException:
        proc.terminate()
        raise
    summary = _end(proc)
    assert summary["stop_reason"].startswith("operator flatten")
    assert net_units(server) == 0
    assert not [o for o in server.sim.account.orders.values() if o.state == "PENDING"]
    (status, stop), = risk_rows(risk_conn, "SELECT status, broker -> 'stop' FROM runs WHERE id = %s", run_id)
    assert status == "stopped" and stop["operator"] == "flatten" and stop["positions"] == "flatten"
    (handled,), = risk_rows(risk_conn, "SELECT handled_at FROM live_control WHERE run_id = %s", run_id)
    assert handled is not None
    assert pd.Timestamp(handled) <= pd.Timestamp.now(tz="UTC")


def test_alerts_summary_cli_sends_the_day_to_the_receiver(sim, receiver, risk_conn):
    url, received = receiver
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "2", "units": "1000"}, granularity="M10",
                     max_bars=4, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    today = pd.Timestamp.now(tz="UTC").date().isoformat()
    env = sim_env(server, MBATS_ALERT_URLS=url)
    out = subprocess.run([sys.executable, "-m", "mbats.cli.main", "alerts", "summary", "--day", today, "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["sent"] is True and result.run_id in [s["run_id"] for s in summary["sessions"]]
    sent, = [r for r in received if r["title"] == f"MBATS daily summary {today}"]
    assert f"#{result.run_id} live_probe paper finished" in sent["message"] and sent["type"] in ("info", "warning")
    bad = subprocess.run([sys.executable, "-m", "mbats.cli.main", "alerts", "summary", "--day", "yesterday"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --day") and "Traceback" not in bad.stderr
