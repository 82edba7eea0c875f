"""Serve a registered model over REST (``mlflow models serve --env-manager local``) and call it.

The server answers ``GET /ping`` and ``POST /invocations``; :func:`predict` sends a feature
frame as ``dataframe_split`` and returns the probabilities of an up move.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mbats.errors import ServiceUnavailableError
from mbats.ml.features import FEATURES


def serve_command(model_uri: str, host: str = "127.0.0.1", port: int = 5001, workers: int = 1) -> list[str]:
    return [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "-h", host, "-p", str(port), "-w", str(workers)]


def serve_env() -> dict[str, str]:
    """The environment the server needs: the tracking URI to resolve models:/ and the venv's bin on PATH
    (mlflow execs uvicorn by name)."""
    from mbats.tracking import tracking_uri

    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def start_server(model_uri: str, host: str = "127.0.0.1", port: int = 5001, log: Path | None = None,
                 timeout: float = 120.0) -> subprocess.Popen:
    """Start a model server in the background and wait for ``/ping``; the caller stops it."""
    out = log.open("w") if log else subprocess.DEVNULL
    process = subprocess.Popen(serve_command(model_uri, host, port), env=serve_env(), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        wait_ready(url, timeout, process)
    except BaseException:
        stop_server(process)
        raise
    return process


def stop_server(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def wait_ready(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> float:
    """Poll ``/ping`` until it answers 200; return the seconds waited."""
    import requests

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise ServiceUnavailableError(f"model server exited with code {process.returncode}")
        try:
            if requests.get(f"{url.rstrip('/')}/ping", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise ServiceUnavailableError(f"model server {url} did not answer /ping in {timeout:.0f}s")


def predict(url: str, features: pd.DataFrame, timeout: float = 30.0) -> np.ndarray:
    """Probabilities of an up move for each feature row, from a model server's ``/invocations``."""
    import requests

    frame = features[list(FEATURES)]
    payload = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    try:
        response = requests.post(f"{url.rstrip('/')}/invocations", json=payload, timeout=timeout)
    except requests.RequestException as exc:
        raise ServiceUnavailableError(f"model server {url} is not reachable ({type(exc).__name__}); "
                                      "start it with `mbats ml serve`") from None
    if response.status_code != 200:
        raise ServiceUnavailableError(f"model server {url} answered {response.status_code}: {response.text[:300]}")
    predictions = np.asarray(response.json()["predictions"], dtype="float64")
    return up_probability(predictions)


def up_probability(predictions) -> np.ndarray:
    """Column 1 of ``predict_proba`` output, whether it comes as an array or a DataFrame."""
    values = np.asarray(predictions.to_numpy() if hasattr(predictions, "to_numpy") else predictions, dtype="float64")
    return values[:, 1] if values.ndim == 2 else values
