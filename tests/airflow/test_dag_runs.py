"""Each DAG run with ``dag.test()`` against the session's PostgreSQL, with data landing.

Market data comes from the OANDA simulator (real HTTP, the real oandapyV20 client); sweeps,
training and end-of-day risk run over the bundled sample data.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pandas as pd
import pytest
from af_helpers import DAGS


def _states(dr) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def _labels(dr, task_id: str) -> list[str]:
    return sorted(ti.rendered_map_index for ti in dr.get_task_instances() if ti.task_id == task_id)


# --- market data from the OANDA simulator ------------------------------------------------------
SIM_SYMBOLS = ("EUR_CHF", "GBP_CHF")  # pairs no other suite uses
SIM_START, SIM_END = "2024-05-06", "2024-05-10"


@pytest.fixture
def oanda_sim(monkeypatch):
    from mbats.config import reset_settings_cache
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, synthetic_bars

    bars = {s: synthetic_bars(s, SIM_START, SIM_END, "M1") for s in SIM_SYMBOLS}
    server = SimServer(Simulator(bars, "M1", SimConfig(max_requests_per_second=None))).start()
    for key, value in {"MBATS_OANDA_ENVIRONMENT": "sim", "MBATS_OANDA_SIM_URL": server.url,
                       "MBATS_OANDA_TOKEN": DEFAULT_TOKEN, "MBATS_OANDA_ACCOUNT_ID": DEFAULT_ACCOUNT,
                       "MBATS_OANDA_RETRY_ATTEMPTS": "2", "MBATS_OANDA_RETRY_MAX_WAIT": "0.05"}.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    yield bars
    server.stop()
    reset_settings_cache()


def _bar_counts(symbols, granularity="M1") -> dict[str, int]:
    from mbats.db import connect

    conn = connect("secmaster")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT i.symbol, count(b.ts) FROM instruments i LEFT JOIN bars b ON b.instrument_id = i.id "
                        "AND b.granularity = %s WHERE i.symbol = ANY(%s) GROUP BY i.symbol", (granularity, list(symbols)))
            return dict(cur.fetchall())
    finally:
        conn.close()


def test_market_data_minute_loads_each_instrument_idempotently_and_survives_a_bad_one(dagbag, airflow_db, oanda_sim):
    dag = dagbag.dags["market_data_minute"]
    logical = datetime(2024, 5, 7, 10, 0, tzinfo=timezone.utc)  # a Tuesday: a full trading hour
    conf = {"instruments": [*SIM_SYMBOLS, "ZAR_MXN"]}  # the simulator does not know ZAR_MXN → 404

    dr = dag.test(logical_date=logical, run_conf=conf)
    start, end = pd.Timestamp(dr.data_interval_start), pd.Timestamp(dr.data_interval_end)
    assert end - start == pd.Timedelta(hours=1)
    states = _states(dr)
    assert sorted(states["download"]) == ["failed", "success", "success"]
    assert states["data_quality"] == ["success"]  # the report ran although one instrument failed
    assert states["all_instruments_loaded"] == ["upstream_failed"]
    assert str(dr.state) == "failed"
    assert _labels(dr, "download") == sorted(conf["instruments"])

    expected = {s: int(((b.index >= start) & (b.index < end)).sum()) for s, b in oanda_sim.items()}
    assert all(v == 60 for v in expected.values())
    counts = _bar_counts(SIM_SYMBOLS)
    assert counts == expected  # exactly the interval, nothing before or after

    dq = next(ti for ti in dr.get_task_instances() if ti.task_id == "data_quality").xcom_pull(task_ids="data_quality")
    assert dq["reports"]["EUR_CHF"]["missing_bars"] == 0 and dq["reports"]["EUR_CHF"]["expected_bars"] == 60
    assert "ZAR_MXN" in dq["instruments_with_gaps"]
    assert dq["reports"]["ZAR_MXN"].get("missing_bars") == 60 or "error" in dq["reports"]["ZAR_MXN"]

    # re-running the same interval changes no counts
    dr2 = dag.test(logical_date=logical, run_conf={"instruments": list(SIM_SYMBOLS)})
    assert str(dr2.state) == "success"
    assert _bar_counts(SIM_SYMBOLS) == expected


def test_market_data_daily_loads_the_days_hourly_and_daily_candles(dagbag, airflow_db, oanda_sim):
    dr = dagbag.dags["market_data_daily"].test(logical_date=datetime(2024, 5, 8, 0, 0, tzinfo=timezone.utc),
                                              run_conf={"instruments": ["GBP_CHF"]})
    assert str(dr.state) == "success", _states(dr)
    start, end = pd.Timestamp(dr.data_interval_start), pd.Timestamp(dr.data_interval_end)
    assert end - start == pd.Timedelta(days=1)
    assert _bar_counts(["GBP_CHF"], "H1")["GBP_CHF"] == 24  # a full trading day of hours
    # daily candles open at 17:00 New York; the downloader also keeps the candle that contains
    # `start` (it asks OANDA from `start` with includeFirst), so the day before's comes along
    from mbats.db import connect
    from mbats.secmaster import read_bars

    conn = connect("secmaster")
    try:
        daily = read_bars(conn, "GBP_CHF", "D")
    finally:
        conn.close()
    assert [t.isoformat() for t in daily.index] == ["2024-05-06T21:00:00+00:00", "2024-05-07T21:00:00+00:00"]


# --- backtest sweep over the sample data -------------------------------------------------------
def test_backtest_sweep_maps_configurations_and_ranks_them(dagbag, airflow_db, samples_loaded):
    from mbats.db import connect
    from mbats.risk.store import list_runs

    sweep_id = f"dagtest-{uuid.uuid4().hex[:8]}"
    conf = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "granularity": "H1",
            "start": "2017-06-01", "end": "2018-01-01", "grid": {"fast": [5, 10]},
            "ranges": {"slow": {"start": 20, "stop": 40, "step": 20}}, "metric": "sharpe", "top": 3,
            "sweep_id": sweep_id}
    dr = dagbag.dags["backtest_sweep"].test(run_conf=conf)
    assert str(dr.state) == "success", _states(dr)
    # 4 configurations in 2 chunks, each scored by the compiled core; the top 3 confirmed in backtrader
    assert _labels(dr, "score_chunk") == ["configurations 1-2 of 4", "configurations 3-4 of 4"]
    summary = next(ti for ti in dr.get_task_instances() if ti.task_id == "confirm").xcom_pull(task_ids="confirm")
    assert summary["configs"] == 4 and summary["finished"] == 3 and len(summary["best"]) == 3
    assert summary["disagreements"] == [] and all(b["agrees"] for b in summary["best"])

    conn = connect("risk")
    try:
        runs = list_runs(conn, sweep_id=sweep_id)
        assert len(runs) == 3 and {r["run_type"] for r in runs} == {"sweep"}
        assert {(r["params"]["fast"], r["params"]["slow"]) for r in runs} == \
            {(b["params"]["fast"], b["params"]["slow"]) for b in summary["best"]}
        by_rank = sorted(runs, key=lambda r: r["metrics"]["sweep_rank"])
        assert [r["metrics"]["sweep_rank"] for r in by_rank] == [1.0, 2.0, 3.0]
        sharpes = [r["metrics"]["sharpe"] for r in by_rank]
        assert sharpes == sorted(sharpes, reverse=True)
        assert summary["best"][0]["run_id"] == by_rank[0]["id"]
        assert all(r["mlflow_run_id"] for r in runs)
    finally:
        conn.close()

    # MLflow: one parent run, the three confirmed configurations are its children
    import mlflow

    from mbats.tracking import use_experiment

    experiment = use_experiment()
    children = mlflow.search_runs([experiment], filter_string=f"tags.`mbats.sweep_id` = '{sweep_id}'",
                                  output_format="list")
    parents = [r for r in children if r.data.tags.get("mbats.run_type") == "sweep-parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    kids = [r for r in children if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(kids) == 3
    assert parents[0].data.tags["mbats.best_run_id"] == str(by_rank[0]["id"])


def test_backtest_sweep_rejects_a_bad_conf_before_mapping(dagbag, airflow_db, samples_loaded):
    dr = dagbag.dags["backtest_sweep"].test(run_conf={"strategy": "sma_crossover", "instruments": ["EUR_USD"],
                                                      "grid": {"no_such_param": [1, 2]}})
    states = _states(dr)
    assert str(dr.state) == "failed"
    assert states["prepare"] == ["failed"] and "score_chunk" not in states or \
        set(states["score_chunk"]) <= {"upstream_failed"}


# --- end-of-day risk ---------------------------------------------------------------------------
def test_eod_risk_writes_var_exposure_and_stress_for_open_positions(dagbag, airflow_db, samples_loaded):
    from mbats.db import connect
    from mbats.risk import store
    from mbats.risk.eod import HISTORICAL_SHOCKS

    sec = connect("secmaster")
    with sec.cursor() as cur:
        cur.execute("SELECT max(b.ts) FROM bars b JOIN instruments i ON i.id = b.instrument_id "
                    "WHERE i.symbol = 'EUR_USD' AND b.granularity = 'H1'")
        last_ts = cur.fetchone()[0]
        cur.execute("SELECT b.close FROM bars b JOIN instruments i ON i.id = b.instrument_id "
                    "WHERE i.symbol = 'EUR_USD' AND b.granularity = 'H1' AND b.ts = %s", (last_ts,))
        last_close = cur.fetchone()[0]
    sec.close()
    as_of = last_ts.date()

    conn = connect("risk")
    run_id = store.create_run(conn, run_type="paper", mode="paper", strategy="sma_crossover", params={},
                              instruments=["EUR_USD"], granularity="H1", cash=100_000.0, broker={},
                              code_version="test", account="sim-paper")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO positions (run_id, ts, instrument, size, avg_price, market_price, unrealized_pnl) "
                    "VALUES (%s, %s, 'EUR_USD', 100000, %s, %s, 0)", (run_id, last_ts, last_close, last_close))
    conn.commit()

    conf = {"as_of": as_of.isoformat(), "modes": ["paper"], "run_ids": [run_id], "lookback_days": 250}
    dag = dagbag.dags["eod_risk"]
    dr = dag.test(run_conf=conf)
    assert str(dr.state) == "success", _states(dr)

    def rows():
        with conn.cursor() as cur:
            cur.execute("SELECT scope, kind, name, value, details FROM eod_risk WHERE as_of = %s", (as_of,))
            return {(s, k, n): (v, d) for s, k, n, v, d in cur.fetchall()}

    got = rows()
    notional = 100_000 * last_close
    assert got[("portfolio", "exposure", "EUR")][0] == pytest.approx(notional)
    assert got[("portfolio", "exposure", "USD")][0] == pytest.approx(-notional)
    var95, details = got[("portfolio", "var", "var_95_1d")]
    cvar95 = got[("portfolio", "cvar", "cvar_95_1d")][0]
    var99 = got[("portfolio", "var", "var_99_1d")][0]
    assert details["scenarios"] >= 200 and details["reliable"] is True
    assert 0.001 * notional < var95 < 0.03 * notional  # EUR/USD daily moves: ~0.1 %–3 %
    assert cvar95 >= var95 and var99 >= var95
    brexit = got[("portfolio", "stress", "brexit_vote_2016_06_24")][0]
    assert brexit == pytest.approx(notional * HISTORICAL_SHOCKS["brexit_vote_2016_06_24"]["moves"]["EUR"])
    assert got[("portfolio", "stress", "worst_day_in_history")][0] < 0

    dag.test(run_conf=conf)  # re-running the day replaces its rows
    assert rows().keys() == got.keys()
    conn.close()


# --- model training ----------------------------------------------------------------------------
def test_model_training_registers_a_challenger_and_promotes_it(dagbag, airflow_db, samples_loaded):
    from mbats.ml.registry import resolve

    name = f"airflow-test-{uuid.uuid4().hex[:6]}"
    conf = {"instruments": ["EUR_USD"], "granularity": "H1", "folds": 3, "model_name": name}
    dr = dagbag.dags["model_training"].test(run_conf=conf)
    assert str(dr.state) == "success", _states(dr)
    outcome = next(ti for ti in dr.get_task_instances()
                   if ti.task_id == "promote_if_better").xcom_pull(task_ids="promote_if_better")
    assert outcome["promoted"] is True and "no champion yet" in outcome["reason"]
    assert resolve(name, "champion").version == resolve(name, "challenger").version == outcome["challenger"]


# --- live deployments --------------------------------------------------------------------------
LIVE_DEPLOYMENT = """
deployments:
  - name: sim_session
    strategy: sma_crossover
    instruments: [EUR_USD]
    granularity: M10
    mode: paper
    account: "${MBATS_OANDA_ACCOUNT_ID}"
    params: {fast: 3, slow: 5}
    schedule: "0 10 * * 1-5"
    session: {start: "10:00", end: "12:00", timezone: UTC}
"""


def test_live_dag_trades_its_session_window_on_the_simulator_and_ends(airflow_db, tmp_path, monkeypatch):
    from airflow.models import DagBag

    from mbats.config import reset_settings_cache
    from mbats.db import connect
    from mbats.risk.store import get_run
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, synthetic_bars

    path = tmp_path / "deployments.yaml"
    path.write_text(LIVE_DEPLOYMENT)
    bars = {"EUR_USD": synthetic_bars("EUR_USD", "2024-03-04", "2024-03-06", "M10", seed=5)}
    # replay at 600x: the two-hour session takes ~12 s of wall time
    server = SimServer(Simulator(bars, "M10", SimConfig(speed="x600", start="2024-03-05T10:00Z",
                                                        heartbeat_seconds=0.3, max_requests_per_second=None))).start()
    try:
        for key, value in {"MBATS_DEPLOYMENTS_FILE": str(path), "MBATS_OANDA_ENVIRONMENT": "sim",
                           "MBATS_OANDA_SIM_URL": server.url, "MBATS_OANDA_TOKEN": DEFAULT_TOKEN,
                           "MBATS_OANDA_ACCOUNT_ID": DEFAULT_ACCOUNT, "MBATS_LIVE_HEARTBEAT_TIMEOUT": "5"}.items():
            monkeypatch.setenv(key, value)
        reset_settings_cache()
        bag = DagBag(dag_folder=str(DAGS / "live.py"))
        assert bag.import_errors == {} and "live_sim_session" in bag.dags
        dr = bag.dags["live_sim_session"].test(logical_date=datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc))
        states = _states(dr)
        assert str(dr.state) == "success", states
        summary = next(ti for ti in dr.get_task_instances()
                       if ti.task_id == "trade_session").xcom_pull(task_ids="trade_session")
        assert summary["session_end"] == "2024-03-05T12:00:00+00:00"
        conn = connect("risk")
        try:
            run = get_run(conn, summary["result"])
        finally:
            conn.close()
        assert run["mode"] == "paper" and run["status"] == "finished" and run["account"] == DEFAULT_ACCOUNT
        assert run["strategy"] == "sma_crossover" and run["params"]["fast"] == 3
    finally:
        server.stop()
        reset_settings_cache()


def test_live_runner_missing_is_a_clear_error(monkeypatch):
    import mbats.live
    from mbats.orchestration import live
    from mbats.orchestration.deployments import Deployment

    dep = Deployment.from_dict({"name": "x", "strategy": "sma_crossover", "instruments": ["EUR_USD"], "mode": "paper",
                                "schedule": "@daily", "session": {"start": "00:00", "end": "23:00"}})
    monkeypatch.delattr(mbats.live, "run_session")
    with pytest.raises(live.LiveRunnerUnavailable, match="live runner is not available"):
        live.run_session(dep, datetime(2030, 1, 1, tzinfo=timezone.utc), now=datetime(2030, 1, 1, tzinfo=timezone.utc))
