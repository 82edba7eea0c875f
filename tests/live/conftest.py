"""Live-runner fixtures: a simulator replaying a synthetic day on loopback, settings pointing at it,
a strategies folder with the real strategies plus a probe, and a webhook receiver."""

from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from mbats.config import get_settings, reset_settings_cache
from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, synthetic_bars

ROOT = Path(__file__).resolve().parents[2]
DAY = "2024-03-05"
GRAN = "M10"


@pytest.fixture(scope="session")
def live_strategies(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("live-strategies")
    for f in ["sma_crossover.py", "rsi_atr.py"]:
        shutil.copy(ROOT / "strategies" / f, folder / f)
    for f in ["live_probe.py", "db_drop.py"]:
        shutil.copy(Path(__file__).parent / "strategies" / f, folder / f)
    return folder


@pytest.fixture(autouse=True)
def _strategies_env(live_strategies, monkeypatch):
    monkeypatch.setenv("MBATS_STRATEGIES_DIR", str(live_strategies))
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.fixture
def sim():
    """factory(start="…", spread_pips=1.0, **SimConfig) → a started SimServer replaying EUR_USD (+USD_JPY) M10."""
    servers: list[SimServer] = []

    def make(start: str = f"{DAY}T04:00Z", **config) -> SimServer:
        bars = {s: synthetic_bars(s, DAY, "2024-03-06", GRAN, seed=11) for s in ("EUR_USD", "USD_JPY")}
        config = {"heartbeat_seconds": 0.3, "stream_poll_seconds": 0.01, "max_requests_per_second": None,
                  "start": start} | config
        server = SimServer(Simulator(bars, GRAN, SimConfig(**config))).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


def sim_settings(server: SimServer, token: str = DEFAULT_TOKEN):
    return get_settings().model_copy(update={
        "oanda_environment": "sim", "oanda_token": SecretStr(token), "oanda_account_id": DEFAULT_ACCOUNT,
        "oanda_sim_url": server.url, "oanda_retry_attempts": 2, "oanda_retry_max_wait": 0.5,
        "live_heartbeat_timeout": 3.0})


def sim_env(server: SimServer, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MBATS_OANDA_ENVIRONMENT": "sim", "MBATS_OANDA_TOKEN": DEFAULT_TOKEN,
                "MBATS_OANDA_ACCOUNT_ID": DEFAULT_ACCOUNT, "MBATS_OANDA_SIM_URL": server.url,
                "MBATS_LIVE_HEARTBEAT_TIMEOUT": "3", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


@pytest.fixture
def webhook():
    """A local HTTP server collecting the JSON bodies POSTed to it: (url, list of payloads)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def fills_at_sim(server: SimServer) -> list[dict]:
    return [t for t in server.sim.account.transactions if t["type"] == "ORDER_FILL"]


def client_orders_at_sim(server: SimServer) -> list[str]:
    """clientExtensions ids of every client order the simulator accepted (duplicates kept)."""
    return [t["clientExtensions"]["id"] for t in server.sim.account.transactions
            if t.get("reason") == "CLIENT_ORDER" and t.get("clientExtensions")]


def net_units(server: SimServer, instrument: str = "EUR_USD") -> float:
    return sum(t.current_units for t in server.sim.account.open_trades(instrument))


def risk_rows(conn, query: str, *args) -> list[tuple]:
    """Rows of a query on the risk DB, leaving no transaction open."""
    with conn.cursor() as cur:
        cur.execute(query, args)
        rows = cur.fetchall()
    conn.rollback()
    return rows
