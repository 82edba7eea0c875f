"""A fresh Superset for the dashboard tests: metadata DB on the session's embedded PostgreSQL,
started once per module from Superset's own venv (.cache/venv-superset, `make venv-superset`),
with data from `mbats demo`, a parameter sweep, a paper-trading day, a walk-forward and a Monte Carlo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))


ROOT = Path(__file__).resolve().parents[2]
SUPERSET_BIN = ROOT / ".cache" / "venv-superset" / "bin"
START = ROOT / "services" / "superset" / "start.sh"
RO_PASSWORD = "ro-" + os.urandom(6).hex()
ADMIN_PASSWORD = "admin-" + os.urandom(6).hex()
SWEEP_ID = "sweep-sma-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _failed_session() -> int:
    """A paper session that failed: its error, with the word "Error" in it, is data of the Live
    dashboard's session-state table, which the chart checks must not take for a chart error."""
    from mbats.db import connect
    from mbats.risk import store

    conn = connect("risk")
    try:
        run_id = store.create_run(conn, run_type="paper", mode="paper", strategy="sma_crossover",
                                  params={"fast": 10, "slow": 30}, instruments=["EUR_USD"], granularity="M1",
                                  cash=100_000.0, broker={}, code_version="test", account="sim-002")
        store.mark_failed(conn, run_id, "ConnectionError: the venue did not answer (Error 503)")
        return run_id
    finally:
        conn.close()


def _paper_day() -> int:
    """A paper run trading today (UTC): equity since yesterday, positions, orders, fills, risk events."""
    from psycopg2.extras import Json

    from mbats.db import connect
    from mbats.risk import store

    now = datetime.now(timezone.utc).replace(microsecond=0)
    conn = connect("risk")
    try:
        run_id = store.create_run(conn, run_type="paper", mode="paper", strategy="sma_crossover",
                                  params={"fast": 10, "slow": 30}, instruments=["EUR_USD", "GBP_USD"],
                                  granularity="M1", cash=100_000.0, broker={}, code_version="test",
                                  account="sim-001")
        with conn.cursor() as cur:
            start = now - timedelta(days=1)
            for i in range(0, 24 * 60 + 1, 30):
                ts = start + timedelta(minutes=i)
                value = 100_000 + 5 * i ** 0.5 * (1 if i % 60 else -1)
                cur.execute("INSERT INTO equity (run_id, ts, cash, value, drawdown_pct) VALUES (%s, %s, %s, %s, %s)",
                            (run_id, ts, value, value, -0.1 if i % 60 == 0 else 0.0))
            cur.execute("INSERT INTO positions VALUES (%s, %s, 'EUR_USD', 10000, 1.0850, 1.0862, 12.0), "
                        "(%s, %s, 'GBP_USD', -5000, 1.2700, 1.2690, 5.0)", (run_id, now, run_id, now))
            for ref, (inst, side, size, price) in enumerate([("EUR_USD", "buy", 10000, 1.0850),
                                                             ("GBP_USD", "sell", 5000, 1.2700),
                                                             ("EUR_USD", "sell", 2000, 1.0870)], 1):
                ts = now - timedelta(minutes=10 * ref)
                cur.execute("INSERT INTO orders (run_id, order_ref, instrument, created_at, side, order_type, size, "
                            "price, status) VALUES (%s, %s, %s, %s, %s, 'market', %s, %s, %s)",
                            (run_id, str(ref), inst, ts, side, size, price, "filled" if ref < 3 else "pending"))
                if ref < 3:
                    cur.execute("INSERT INTO fills (run_id, fill_id, order_ref, instrument, ts, size, price) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                (run_id, ref, str(ref), inst, ts, size if side == "buy" else -size, price))
            # the live engine's table (its own migration may already have made it)
            cur.execute("CREATE TABLE IF NOT EXISTS risk_events (ts timestamptz NOT NULL, run_id bigint, "
                        "rule text NOT NULL, instrument text, detail text, action text)")
            cur.execute("INSERT INTO risk_events (ts, run_id, rule, instrument, detail, action) VALUES "
                        "(%s, %s, 'max_position_units', 'EUR_USD', '12000 > 10000', 'blocked'), "
                        "(%s, %s, 'daily_loss_limit', NULL, 'loss 0.4%% of 2%% limit', 'ok')",
                        (now - timedelta(minutes=5), run_id, now - timedelta(minutes=1), run_id))
            cur.execute("UPDATE runs SET params = %s WHERE id = %s", (Json({"fast": 10, "slow": 30}), run_id))
        conn.commit()
        return run_id
    finally:
        conn.close()


EOD_DAYS = [d.date() for d in __import__("pandas").bdate_range("2024-01-15", "2024-01-31")]


def _eod_risk_days() -> dict:
    """A paper portfolio (GBP/USD long, AUD/USD short, sizes changing daily) on the synthetic sample
    bars of January 2024, recorded by the live store, and its end-of-day risk computed and stored
    by mbats.risk.eod for each business day of the second half of the month."""
    from mbats.db import connect
    from mbats.risk.eod import run_eod
    from mbats.risk.live import LiveStore

    store = LiveStore(connect("risk"))
    try:
        run_id, _ = store.open_run(session_key=f"eod-dashboard-{os.urandom(4).hex()}", run_type="paper",
                                   mode="paper", strategy="sma_crossover", params={"fast": 10, "slow": 30},
                                   instruments=["GBP_USD", "AUD_USD"], granularity="M1", cash=100_000.0, broker={},
                                   code_version="test", account="sim-eod")
        for k, day in enumerate(EOD_DAYS):
            ts = datetime(day.year, day.month, day.day, 20, tzinfo=timezone.utc)
            store.snapshot(ts, 100_000.0, 100_000.0 + 150 * k * (-1) ** k, [
                {"instrument": "GBP_USD", "size": 50_000 + 10_000 * k, "avg_price": None, "market_price": None,
                 "unrealized_pnl": 0.0},
                {"instrument": "AUD_USD", "size": -80_000, "avg_price": None, "market_price": None,
                 "unrealized_pnl": 0.0}])
        summaries = [run_eod(day, run_ids=[run_id], lookback_days=60) for day in EOD_DAYS]
        store.finish("finished", len(EOD_DAYS))
    finally:
        store.conn.close()
    return {"run_id": run_id, "days": EOD_DAYS, "summaries": summaries}


def _walk_forward_and_montecarlo(run_id: int) -> dict:
    """A rolling walk-forward of the sample EUR/USD H1 bars and a Monte Carlo of one run, made the way
    `mbats walkforward` and `mbats montecarlo` make them (the library calls behind both commands)."""
    from mbats.backtest.runner import BacktestSpec
    from mbats.db import connect
    from mbats.research.montecarlo import simulate_run
    from mbats.research.walkforward import WalkForwardRequest, run_walk_forward
    from mbats.risk.research import read_run_for_montecarlo, save_montecarlo

    base = BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="H1",
                        start=datetime(2017, 5, 1, tzinfo=timezone.utc), end=datetime(2018, 1, 1, tzinfo=timezone.utc),
                        spread_pips=1.0)
    wf = run_walk_forward(WalkForwardRequest(base, {"fast": [5, 10], "slow": [30, 60]}, "60D", "30D", rank_by="sharpe",
                                             workers=1, track=False))
    conn = connect("risk")
    try:
        run, trades, equity = read_run_for_montecarlo(conn, run_id)
        # bootstrap (trades drawn with replacement): final equity varies over the paths, unlike a shuffle;
        # a fresh seed makes this the newest simulation even where the session DB holds earlier ones
        result = simulate_run(trades, equity, run["cash"], 1000, int.from_bytes(os.urandom(4), "big"), "bootstrap")
        mc_id = save_montecarlo(conn, run_id, result, run["metrics"])
    finally:
        conn.close()
    return {"wf": wf, "mc_id": mc_id, "mc": result, "mc_run": run_id}


@pytest.fixture(scope="module")
def dashboard_data(pg_server) -> dict:
    """Demo backtests, a 2x2 sweep and a paper-trading day in the session's databases."""
    from mbats.backtest.runner import BacktestSpec, run_backtest
    from mbats.dashboards.views import apply_views
    from mbats.demo import run_demo
    from mbats.stack.live_seed import sim_paper_session

    os.environ["MBATS_SUPERSET_DB_PASSWORD"] = RO_PASSWORD
    demo = run_demo(track=False)
    sweep = [run_backtest(BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="H1",
                                       params={"fast": fast, "slow": slow}, run_type="sweep", sweep_id=SWEEP_ID),
                          track=False, write_report=False)
             for fast in (5, 10) for slow in (30, 60)]
    paper = _paper_day()
    failed = _failed_session()
    eod = _eod_risk_days()
    sim = sim_paper_session(bars=40)  # what a stack's first start records (mbats.stack.live_seed)
    research = _walk_forward_and_montecarlo(demo[0].run_id)
    apply_views()  # picks up risk_events and sets the read-only role's password
    return {"demo": [r.run_id for r in demo], "sweep": [r.run_id for r in sweep], "paper": paper, "failed": failed,
            "ro_password": RO_PASSWORD, "sweep_id": SWEEP_ID,
            "eod": eod, "sim_run": sim.run_id, "research": research}


def _env(pg_server: str, metadata_db: str, port: int) -> dict:
    from mbats.db import database_url
    from mbats.dashboards.views import readonly_role

    host_port = pg_server.split("@")[-1]
    return dict(os.environ,
                SUPERSET_SECRET_KEY=os.urandom(24).hex(),
                SUPERSET_DATABASE_URI=database_url(metadata_db),
                SUPERSET_ADMIN_PASSWORD=ADMIN_PASSWORD,
                MBATS_SUPERSET_DATA_URL=f"postgresql://{readonly_role()}:{RO_PASSWORD}@{host_port}",
                SUPERSET_BIN_DIR=str(SUPERSET_BIN), SUPERSET_HOST="127.0.0.1", SUPERSET_PORT=str(port),
                SUPERSET_WORKERS="1", PYTHONWARNINGS="ignore")


def run_init(env: dict, log: Path) -> float:
    t0 = time.time()
    with log.open("a") as out:
        proc = subprocess.run([str(START), "init"], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, f"start.sh init failed, see {log}:\n{log.read_text()[-3000:]}"
    return time.time() - t0


@pytest.fixture(scope="module")
def superset(pg_server, dashboard_data, tmp_path_factory):
    """Initialised Superset (start.sh init) serving on a free port; yields its settings."""
    from mbats.db import ensure_database

    assert (SUPERSET_BIN / "superset").exists(), "Superset venv missing: run `make venv-superset`"
    port = free_port()
    metadata_db = f"superset_test_{port}"
    ensure_database(metadata_db)
    env = _env(pg_server, metadata_db, port)
    logs = tmp_path_factory.mktemp("superset")
    init_seconds = run_init(env, logs / "init.log")
    from superset_meta import _snapshot

    after_first_init = _snapshot(metadata_db)
    server_log = (logs / "server.log").open("w")
    proc = subprocess.Popen([str(START), "serve"], env=env, stdout=server_log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            assert proc.poll() is None, f"Superset exited: {(logs / 'server.log').read_text()[-3000:]}"
            try:
                if requests.get(f"{base}/health", timeout=2).text == "OK":
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            raise AssertionError("Superset did not answer /health in 240 s")
        yield {"base": base, "env": env, "logs": logs, "user": "admin", "password": ADMIN_PASSWORD,
               "metadata_db": metadata_db, "init_seconds": init_seconds, "run_init": run_init,
               "after_first_init": after_first_init}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        server_log.close()


@pytest.fixture(scope="module")
def browser(superset):
    from superset_browser import login, start_driver

    driver = start_driver()
    try:
        login(driver, superset["base"], superset["user"], superset["password"])
        yield driver
    finally:
        driver.quit()
