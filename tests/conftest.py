"""Shared fixtures: one real embedded PostgreSQL per test session, on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mbats_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mbats-home")


@pytest.fixture(scope="session", autouse=True)
def pg_server(mbats_home: Path):
    """Start an embedded PostgreSQL for the whole session and migrate both databases."""
    from mbats import db
    from mbats.config import reset_settings_cache
    from mbats.db import embedded
    from mbats.db.migrate import upgrade_all

    saved = {k: os.environ.get(k) for k in ("MBATS_HOME", "MBATS_EMBEDDED_PG_PORT", "MBATS_DATABASE_URL")}
    os.environ["MBATS_HOME"] = str(mbats_home)
    os.environ["MBATS_EMBEDDED_PG_PORT"] = str(free_port())
    os.environ.pop("MBATS_DATABASE_URL", None)
    os.environ.setdefault("MBATS_STRATEGIES_DIR", str(Path(__file__).resolve().parent.parent / "strategies"))
    reset_settings_cache()
    db.dispose_engines()
    upgrade_all()
    url = db.server_url()
    yield url
    db.dispose_engines()
    embedded.stop(mbats_home / "pgdata")
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings_cache()


def _connection(database: str):
    from mbats.db import connect

    conn = connect(database)
    yield conn
    conn.rollback()
    conn.close()


@pytest.fixture
def secmaster_conn():
    yield from _connection("secmaster")


@pytest.fixture
def risk_conn():
    yield from _connection("risk")


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests keep screenshots and reports for a human to look at (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


ALERT_TOKEN = "T0K3N-alerts-secret"


@contextmanager
def alert_receiver():
    """A loopback HTTP server collecting what apprise's json:// schema POSTs: (apprise URL, payloads)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/alerts/{ALERT_TOKEN}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver():
    with alert_receiver() as got:
        yield got
