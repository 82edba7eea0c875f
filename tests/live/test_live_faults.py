"""Exactly-once orders under the simulator's faults: an order POST whose answer is lost (after OANDA
filled it), or that times out while OANDA is still working on it, is looked up, never resent blindly."""

from __future__ import annotations

from collections import Counter

import pytest

from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig
from mbats.live.session import run
from mbats.sim import Fault
from tests.live.conftest import client_orders_at_sim, fills_at_sim, net_units, sim_settings


def _rows(conn, query: str, *args) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


@pytest.mark.parametrize("fault, settings_update", [
    (Fault(kind="lost_answer", path="/orders", status=503), {}),  # filled, then the answer lost
    (Fault(kind="lost_answer", path="/orders", status=504, after=1, count=2), {}),  # second and third order
    (Fault(kind="delay", path="/orders", seconds=1.5), {"oanda_timeout_seconds": 1.0}),  # times out, fills later
], ids=["lost-503", "lost-504-twice", "timeout-then-fill"])
def test_an_order_whose_answer_is_lost_fills_exactly_once(sim, risk_conn, fault, settings_update):
    server = sim()
    server.sim.faults.add(fault)
    settings = sim_settings(server).model_copy(update={"oanda_retry_attempts": 4, **settings_update})
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "2"}, granularity="M10", max_bars=7, warmup=3,
                     sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=settings)
    assert result.status == "finished"
    assert server.sim.faults.pending() == []  # the fault fired
    sent = client_orders_at_sim(server)
    assert len(sent) >= 3
    assert [cid for cid, n in Counter(sent).items() if n > 1] == []  # no client order id twice at OANDA
    fills = fills_at_sim(server)
    assert len(fills) == len(sent)  # one fill per order decided
    assert net_units(server) == 1000 * len(sent)
    db_fills = {r[0] for r in _rows(risk_conn, "SELECT fill_id FROM fills WHERE run_id = %s", result.run_id)}
    assert db_fills == {int(t["id"]) for t in fills}
    completed = _rows(risk_conn, "SELECT client_order_id FROM orders WHERE run_id = %s AND status = 'completed'",
                      result.run_id)
    assert sorted(r[0] for r in completed) == sorted(sent)
    last_size, = _rows(risk_conn, "SELECT size FROM positions WHERE run_id = %s ORDER BY ts DESC LIMIT 1",
                       result.run_id)[0]
    assert last_size == net_units(server)


def test_the_kill_switch_flattens_even_when_the_close_answer_is_lost(sim, risk_conn):
    server = sim(spread_pips=40.0)
    server.sim.faults.add(Fault(kind="lost_answer", path="/close", status=503))  # the position close's answer
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "10000"}, granularity="M10",
                     max_bars=30, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(max_daily_loss=100.0), settings=sim_settings(server))
    assert server.sim.stats["answers_lost"] == 1
    assert result.status == "stopped" and net_units(server) == 0
    closeouts = [t for t in server.sim.account.transactions if t.get("reason") == "POSITION_CLOSEOUT"]
    assert len(closeouts) == 1  # closed once; the retry found nothing left to close
    status, = _rows(risk_conn, "SELECT status FROM runs WHERE id = %s", result.run_id)[0]
    assert status == "stopped"


def test_position_drift_is_a_risk_event_and_past_the_tolerance_stops_trading(sim, risk_conn):
    """The account changes behind the runner's back (no transaction it could see): the periodic drift
    check notices, records a risk event, adopts the broker's figure and stops the session."""
    import threading

    server = sim()
    acct = server.sim.account
    done = threading.Event()

    def shrink_the_first_trade() -> None:
        while not done.is_set():
            with server.sim.lock:
                trades = acct.open_trades("EUR_USD")
                if trades:
                    trades[0].current_units -= 400  # e.g. an adjustment the transaction feed never showed
                    return
            done.wait(0.01)

    worker = threading.Thread(target=shrink_the_first_trade, daemon=True)
    worker.start()
    settings = sim_settings(server).model_copy(update={"live_drift_check_bars": 2,
                                                       "live_drift_tolerance_units": 100.0})
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "30"}, granularity="M10", max_bars=40, warmup=3,
                     sim_step=True)  # one order in the first 30 bars (at 05:00), then none
    try:
        result = run(cfg, risk=RiskLimits(), settings=settings)
    finally:
        done.set()
        worker.join(timeout=5)
    assert result.status == "stopped" and result.exit_code == 3 and result.live_bars < 40
    assert "position drift" in result.stop_reason
    events = _rows(risk_conn, "SELECT rule, action, detail FROM risk_events WHERE run_id = %s", result.run_id)
    assert [(r, a) for r, a, _ in events] == [("position_drift", "stop")]
    assert "runner +1000, broker +600" in events[0][2]
    last_size, = _rows(risk_conn, "SELECT size FROM positions WHERE run_id = %s ORDER BY ts DESC LIMIT 1",
                       result.run_id)[0]
    assert last_size in (1000, 600)  # the snapshot before the check; the broker's figure is adopted after
