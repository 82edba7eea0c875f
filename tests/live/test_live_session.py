"""Paper trading against the simulator in-process: fills, brackets, stream drops, risk limits, errors."""

from __future__ import annotations

import pandas as pd
import pytest

from mbats.errors import ConfigError
from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig, check_mode
from mbats.live.session import run
from mbats.sim import Fault
from tests.live.conftest import client_orders_at_sim, fills_at_sim, net_units, sim_settings


def _rows(conn, query: str, *args) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def test_paper_day_fills_match_the_simulator_account(sim, risk_conn):
    server = sim(start="2024-03-05T03:20Z")
    cfg = LiveConfig("sma_crossover", ["EUR_USD"], params={"fast": "3", "slow": "8"}, granularity="M10",
                     until=pd.Timestamp("2024-03-05T22:00Z").to_pydatetime(), warmup=20, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    assert result.status == "finished" and not result.resumed
    assert result.live_bars == (22 * 60 - 3 * 60 - 20) // 10  # every bar from 03:20 to 22:00, none missing

    sim_fills = {int(t["id"]): (float(t["units"]), float(t["price"])) for t in fills_at_sim(server)}
    db_fills = {fid: (size, price) for fid, size, price in
                _rows(risk_conn, "SELECT fill_id, size, price FROM fills WHERE run_id = %s", result.run_id)}
    assert len(sim_fills) >= 6  # the crossover traded through the day
    assert db_fills == sim_fills
    db_orders = {r[0] for r in _rows(risk_conn, "SELECT client_order_id FROM orders WHERE run_id = %s AND "
                                                "status = 'completed'", result.run_id)}
    assert db_orders == set(client_orders_at_sim(server))
    (mode, run_type, status, strategy), = _rows(risk_conn, "SELECT mode, run_type, status, strategy FROM runs "
                                                           "WHERE id = %s", result.run_id)
    assert (mode, run_type, status, strategy) == ("paper", "paper", "finished", "sma_crossover")
    last_size, = _rows(risk_conn, "SELECT size FROM positions WHERE run_id = %s ORDER BY ts DESC LIMIT 1",
                       result.run_id)[0]
    assert last_size == net_units(server)
    nav, = _rows(risk_conn, "SELECT value FROM equity WHERE run_id = %s ORDER BY ts DESC LIMIT 1", result.run_id)[0]
    assert nav == pytest.approx(float(server.sim.account.summary()["NAV"]), abs=5.0)


def test_bracket_orders_go_out_as_one_order_with_stop_loss_and_take_profit(sim, risk_conn):
    server = sim(spread_pips=0.2)
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "4", "bracket": "true", "pips": "8"},
                     granularity="M10", max_bars=24, warmup=5, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    txns = server.sim.account.transactions
    entries = [t for t in txns if t.get("reason") == "CLIENT_ORDER"]
    assert entries and all("stopLossOnFill" in t and "takeProfitOnFill" in t for t in entries)
    exits = [t for t in txns if t["type"] == "ORDER_FILL" and t["reason"] in ("STOP_LOSS_ORDER", "TAKE_PROFIT_ORDER")]
    assert exits, "no stop-loss or take-profit filled during the replay"
    statuses = dict(_rows(risk_conn, "SELECT order_ref, status FROM orders WHERE run_id = %s", result.run_id))
    children = {k: v for k, v in statuses.items() if ".sl" in k or ".tp" in k}
    # every exit that filled at OANDA completed its backtrader child; its sibling was cancelled
    assert sum(v == "completed" for v in children.values()) == len(exits)
    assert sum(v == "canceled" for v in children.values()) == len(exits)


def test_stream_drop_reconnects_and_backfills_without_missing_bars(sim, risk_conn):
    server = sim()
    server.sim.faults.add(Fault(kind="drop_stream", messages=2, count=3))
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "50"}, granularity="M10", max_bars=15, warmup=5,
                     sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    assert server.sim.stats["streams_dropped"] == 3
    broker_json, = _rows(risk_conn, "SELECT broker FROM runs WHERE id = %s", result.run_id)[0]
    assert broker_json["live"]["reconnects"] >= 3
    stamps = [r[0] for r in _rows(risk_conn, "SELECT ts FROM equity WHERE run_id = %s ORDER BY ts", result.run_id)]
    assert len(stamps) == 15
    assert all((b - a) == pd.Timedelta(minutes=10) for a, b in zip(stamps, stamps[1:]))


@pytest.mark.parametrize("limits, rule", [
    (RiskLimits(max_units=2500), "max_units"),
    (RiskLimits(max_orders_per_minute=2), "max_orders_per_minute"),
    (RiskLimits(max_gross_exposure=3000.0), "max_gross_exposure"),  # EUR_USD ≈ 1.10 → 3 × 1,000 units > 3,000 USD
])
def test_each_pre_trade_limit_blocks_records_and_posts(sim, risk_conn, webhook, limits, rule):
    url, received = webhook
    limits.webhook_url = url
    server = sim()
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "1000"}, granularity="M10",
                     max_bars=5, warmup=3, sim_step=True)
    result = run(cfg, risk=limits, settings=sim_settings(server))
    sent = client_orders_at_sim(server)
    assert len(sent) == 2  # the third order breaches every limit above and never reaches OANDA
    assert net_units(server) == 2000
    events = _rows(risk_conn, "SELECT rule, instrument, action FROM risk_events WHERE run_id = %s", result.run_id)
    assert events and all(e == (rule, "EUR_USD", "blocked") for e in events)
    assert len(received) == len(events) and {r["rule"] for r in received} == {rule}
    assert received[0]["run_id"] == result.run_id
    rejected = _rows(risk_conn, "SELECT count(*) FROM orders WHERE run_id = %s AND status = 'rejected'", result.run_id)
    assert rejected[0][0] == len(events)


def test_daily_loss_trips_the_kill_switch_flattens_and_stops(sim, risk_conn, webhook):
    url, received = webhook
    server = sim(spread_pips=40.0)  # every 10,000 units bought costs 40 USD of spread at once
    cfg = LiveConfig("live_probe", ["EUR_USD"], params={"every": "1", "units": "10000"}, granularity="M10",
                     max_bars=30, warmup=3, sim_step=True)
    result = run(cfg, risk=RiskLimits(max_daily_loss=100.0, webhook_url=url), settings=sim_settings(server))
    assert result.status == "stopped" and result.live_bars < 30
    assert net_units(server) == 0  # flattened
    assert not [o for o in server.sim.account.orders.values() if o.state == "PENDING"]
    status, = _rows(risk_conn, "SELECT status FROM runs WHERE id = %s", result.run_id)[0]
    assert status == "stopped"
    events = _rows(risk_conn, "SELECT rule, action FROM risk_events WHERE run_id = %s", result.run_id)
    assert ("max_daily_loss", "kill_switch") in events
    assert any(r["rule"] == "max_daily_loss" and r["action"] == "kill_switch" for r in received)


def test_bad_token_is_a_clear_config_error_and_writes_no_run(sim, risk_conn):
    server = sim()
    before = _rows(risk_conn, "SELECT count(*) FROM runs")[0][0]
    with pytest.raises(ConfigError, match="MBATS_OANDA_TOKEN"):
        run(LiveConfig("live_probe", ["EUR_USD"], granularity="M10", max_bars=1, sim_step=True), risk=RiskLimits(),
            settings=sim_settings(server, token="not-the-token"))
    assert _rows(risk_conn, "SELECT count(*) FROM runs")[0][0] == before


def test_live_mode_needs_a_live_environment_and_explicit_confirmation(sim):
    settings = sim_settings(sim())
    with pytest.raises(ConfigError, match="MBATS_OANDA_ENVIRONMENT=live"):
        check_mode(settings, "live", confirm_live=True)
    live = settings.model_copy(update={"oanda_environment": "live"})
    with pytest.raises(ConfigError, match="--confirm-live"):
        check_mode(live, "live", confirm_live=False)
    with pytest.raises(ConfigError, match="paper mode refuses"):
        check_mode(live, "paper", confirm_live=False)
    check_mode(live, "live", confirm_live=True)
    check_mode(live.model_copy(update={"live_confirm": "yes-i-mean-real-money"}), "live", confirm_live=False)


def test_a_session_records_its_data_sources_backfill_and_stream(sim, risk_conn):
    server = sim(start="2024-03-05T06:00Z")
    cfg = LiveConfig("sma_crossover", ["EUR_USD", "USD_JPY"], params={"fast": "3", "slow": "8"}, granularity="M10",
                     max_bars=4, warmup=12, sim_step=True)
    result = run(cfg, risk=RiskLimits(), settings=sim_settings(server))
    (sources, data_from), = _rows(risk_conn, "SELECT data_sources, data_from FROM runs WHERE id = %s", result.run_id)
    by_key = {(s["instrument"], s["kind"]): s for s in sources}
    assert set(by_key) == {(i, k) for i in ("EUR_USD", "USD_JPY") for k in ("live-backfill", "live-stream")}
    for s in sources:  # the simulator's bars are never labelled as OANDA's
        assert (s["vendor"], s["source"], s["is_synthetic"], s["granularity"]) == ("oanda-sim", "oanda:sim", True, "M10")
    backfill = by_key[("EUR_USD", "live-backfill")]
    assert backfill["bars"] == 12
    assert pd.Timestamp(backfill["last"]) - pd.Timestamp(backfill["first"]) == pd.Timedelta(minutes=10 * 11)
    assert pd.Timestamp(backfill["last"]) < pd.Timestamp("2024-03-05T06:00Z")  # history before the replay clock
    stream = by_key[("EUR_USD", "live-stream")]
    assert stream["bars"] >= result.live_bars == 4
    assert pd.Timestamp(stream["first"]) == pd.Timestamp(data_from)
    assert pd.Timestamp(stream["first"]) == pd.Timestamp(backfill["last"]) + pd.Timedelta(minutes=10)
    assert stream["prices"] > 0 and stream["reconnects"] == 0
