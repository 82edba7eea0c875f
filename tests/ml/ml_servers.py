"""Real servers on loopback for the ML tests: SeaweedFS (S3) and the MLflow tracking server.

Each is started as a child process on free ports and stopped by the caller (fixtures).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import requests

TIMINGS: dict[str, float] = {}  # startup and training times, printed at the end of the run


VENV_BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    started_in: float

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers (weed can ignore SIGTERM)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def _wait(url: str, process: subprocess.Popen, log: Path, timeout: float, ok=lambda r: r.status_code < 500) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if ok(requests.get(url, timeout=2)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def start_weed(folder: Path, access_key: str, secret_key: str) -> Server:
    """`weed mini` with every listening port chosen free (the defaults may be taken on a shared host)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "mbats", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    s3_port = free_port()
    ports = {name: free_port() for name in ("master.port", "volume.port", "filer.port", "admin.port",
                                            "webdav.port", "s3.port.iceberg", "s3.port.lance",
                                            "master.port.grpc", "volume.port.grpc", "filer.port.grpc",
                                            "s3.port.grpc", "admin.port.grpc", "metricsPort")}
    args = [str(VENV_BIN / "weed"), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={s3_port}", f"-s3.config={config}", "-master.telemetry=false",
            *(f"-{k}={v}" for k, v in ports.items())]
    (folder / "data").mkdir(exist_ok=True)
    log = folder / "weed.log"
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=folder)
    url = f"http://127.0.0.1:{s3_port}"
    server = Server(process, url, log, 0.0)
    try:
        # Unauthenticated ListBuckets answers 403 once the S3 gateway is up.
        _wait(url, process, log, 60, ok=lambda r: r.status_code in (200, 403))
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - started
    return server


def start_mlflow(folder: Path, backend_uri: str, artifacts_destination: str, env: dict[str, str]) -> Server:
    """The tracking server through services/mlflow/start.sh, the same script the Docker image runs."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**os.environ, **env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "MLFLOW_BACKEND_STORE_URI": backend_uri, "MLFLOW_ARTIFACTS_DESTINATION": artifacts_destination,
                "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "1"}
    log = folder / "mlflow.log"
    started = time.monotonic()
    process = subprocess.Popen(["bash", str(PROJECT / "services/mlflow/start.sh")], env=full_env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    server = Server(process, url, log, 0.0)
    try:
        _wait(f"{url}/health", process, log, 120, ok=lambda r: r.status_code == 200)
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - started
    return server


def planted_bars(n_weeks: int = 20, seed: int = 11) -> pd.DataFrame:
    """H1 bars whose returns mean-revert (r_t = -0.3 r_{t-1} + noise): a pattern a model can learn."""
    from mbats.marketdata.calendar import trading_bar_times

    times = trading_bar_times("2024-01-01", str((pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=n_weeks)).date()),
                              "H1")
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.001, len(times))
    returns = np.empty(len(times))
    returns[0] = noise[0]
    for i in range(1, len(times)):
        returns[i] = -0.3 * returns[i - 1] + noise[i]
    close = 0.9 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[0.9], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.0005, len(times))) * close
    return pd.DataFrame({"ts": times, "open": open_.round(5), "high": (np.maximum(open_, close) + spread).round(5),
                         "low": (np.minimum(open_, close) - spread).round(5), "close": close.round(5),
                         "volume": rng.integers(100, 1000, len(times))})
