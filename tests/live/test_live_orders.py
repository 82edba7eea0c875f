"""Pending orders count against the limits; OCO is refused, GTD expires and trailing stops trail, live."""

from __future__ import annotations

import logging

import pytest

from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig
from mbats.live.session import run
from tests.live.conftest import client_orders_at_sim, risk_rows, sim_settings


def _pending(server) -> list:
    return [o for o in server.sim.account.orders.values() if o.state == "PENDING"]


@pytest.mark.parametrize("limits, rule", [
    (RiskLimits(max_units=2500), "max_units"),
    (RiskLimits(max_gross_exposure=3000.0), "max_gross_exposure"),  # EUR_USD ≈ 1.10: 3 × 1,000 > 3,000 USD
])
def test_resting_limit_orders_count_against_the_limits(sim, risk_conn, limits, rule):
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "limit_pips": "80"}, granularity="M10",
                     max_bars=5, warmup=3, sim_step=True)
    result = run(cfg, risk=limits, settings=sim_settings(server))
    pending = _pending(server)
    assert len(pending) == 2 and sum(o.units for o in pending) == 2000  # worst case if all fill: 2,000 units
    assert len(client_orders_at_sim(server)) == 2
    events = risk_rows(risk_conn, "SELECT rule, action, detail FROM risk_events WHERE run_id = %s", result.run_id)
    assert len(events) == 3 and all(e[0] == rule and e[1] == "blocked" for e in events)
    assert all("2,000 units in pending orders" in e[2] for e in events)


def test_oco_is_refused_with_a_clear_reason_not_ignored(sim, risk_conn, caplog):
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "2", "oco": "true"}, granularity="M10",
                     max_bars=3, warmup=3, sim_step=True)
    with caplog.at_level(logging.ERROR, logger="mbats.venues.oanda.execution"):
        result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    units = [float(t["units"]) for t in server.sim.account.transactions if t.get("reason") == "CLIENT_ORDER"]
    assert units and all(u > 0 for u in units)  # the OCO sell never reached OANDA
    assert any("oco= (one-cancels-other) is not supported live" in r.getMessage() for r in caplog.records)
    rejected = risk_rows(risk_conn, "SELECT side FROM orders WHERE run_id = %s AND status = 'rejected'", result.run_id)
    assert rejected and {r[0] for r in rejected} == {"sell"}


def test_valid_becomes_oanda_gtd_and_the_order_expires(sim, risk_conn):
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "3", "limit_pips": "80", "valid_minutes": "15"},
                     granularity="M10", max_bars=6, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    creates = [t for t in server.sim.account.transactions if t.get("reason") == "CLIENT_ORDER"]
    assert creates and all(t["timeInForce"] == "GTD" and t["gtdTime"] for t in creates)
    expired = [t for t in server.sim.account.transactions if t["type"] == "ORDER_CANCEL"
               and t["reason"] == "TIME_IN_FORCE_EXPIRED"]
    assert expired
    statuses = risk_rows(risk_conn, "SELECT status FROM orders WHERE run_id = %s", result.run_id)
    assert sum(s == "expired" for s, in statuses) == len(expired)


def test_a_trailing_stop_bracket_goes_out_as_oandas_trailing_stop(sim, risk_conn):
    server = sim(spread_pips=0.2)
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "4", "bracket": "true", "pips": "30", "trail": "4"},
                     granularity="M10", max_bars=24, warmup=5, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    txns = server.sim.account.transactions
    entries = [t for t in txns if t.get("reason") == "CLIENT_ORDER"]
    assert entries and all(t["trailingStopLossOnFill"]["distance"] == "0.00040" and "stopLossOnFill" not in t
                           for t in entries)
    trailed = [t for t in txns if t["type"] == "ORDER_FILL" and t["reason"] == "TRAILING_STOP_LOSS_ORDER"]
    assert trailed, "no trailing stop filled during the replay"
    kids = dict(risk_rows(risk_conn, "SELECT order_ref, status FROM orders WHERE run_id = %s AND order_type = 'stop_trail'",
                      result.run_id))
    assert sum(v == "completed" for v in kids.values()) == len(trailed)


def test_an_order_beyond_the_margin_is_rejected_back_to_the_strategy(sim, risk_conn):
    server = sim(balance=1_000.0)  # 1,000 USD at 2 % margin carries ≤ ~45,000 EUR_USD
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "30000"}, granularity="M10",
                     max_bars=3, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    cancels = [t for t in server.sim.account.transactions if t["type"] == "ORDER_CANCEL"]
    assert cancels and all(t["reason"] == "INSUFFICIENT_MARGIN" for t in cancels)
    assert sum(t.current_units for t in server.sim.account.open_trades()) == 30000  # only the first fitted
    statuses = [s for s, in risk_rows(risk_conn, "SELECT status FROM orders WHERE run_id = %s ORDER BY created_at",
                                  result.run_id)]
    assert statuses[0] == "completed" and statuses[1:] == ["rejected"] * len(cancels)
