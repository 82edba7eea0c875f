"""Shared constants and helpers of the Airflow tests (a plain module: tests/airflow is on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url


ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
BIN = Path(sys.executable).parent
EXPECTED_DAGS = {
    "market_data_daily": {"instruments", "download", "data_quality", "all_instruments_loaded"},
    "market_data_minute": {"instruments", "download", "data_quality", "all_instruments_loaded"},
    "backtest_sweep": {"prepare", "chunks", "score_chunk", "confirm"},
    "walk_forward": {"prepare", "run"},
    "model_training": {"train_challenger", "promote_if_better"},
    "eod_risk": {"compute_eod_risk", "daily_summary"},
    "trading_control": {"act"},
    "live_sma_eurusd_paper": {"preflight", "trade_session"},
}


def metadata_url(database: str) -> str:
    from mbats.db import database_url, ensure_database

    ensure_database(database)
    return make_url(database_url(database)).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def airflow_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "airflow"), *args], env=env or os.environ.copy(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result




def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
