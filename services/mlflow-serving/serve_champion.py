"""Serve the registered model's ``@champion`` over REST and follow the alias.

Every ``MLFLOW_SERVING_POLL_SECONDS`` (30) the alias is resolved again; when it points to a new
version (``mbats ml promote`` moved it) the server is restarted on the new version (a few seconds
without answers; the healthcheck's retries tolerate it). Before any champion exists the process waits and reports ``waiting`` in its state
file; ``--check`` (the healthcheck) is healthy when waiting or when the served model answers ``/ping``.

Settings: MBATS_ML_MODEL_NAME, MBATS_MLFLOW_TRACKING_URI (+ MLFLOW_TRACKING_USERNAME/PASSWORD),
MLFLOW_SERVING_HOST (0.0.0.0), MLFLOW_SERVING_PORT (5001), MLFLOW_SERVING_ALIAS (champion),
MLFLOW_SERVING_STATE (/tmp/mlflow-serving.state).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

HOST = os.environ.get("MLFLOW_SERVING_HOST", "0.0.0.0")
PORT = int(os.environ.get("MLFLOW_SERVING_PORT", "5001"))
ALIAS = os.environ.get("MLFLOW_SERVING_ALIAS", "champion")
POLL = float(os.environ.get("MLFLOW_SERVING_POLL_SECONDS", "30"))
STATE = Path(os.environ.get("MLFLOW_SERVING_STATE", "/tmp/mlflow-serving.state"))


def ping(timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/ping", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def check() -> int:
    state = STATE.read_text().strip() if STATE.exists() else "starting"
    if state == "waiting" or (state.startswith("serving") and ping()):
        return 0
    print(f"mlflow-serving: {state}", file=sys.stderr)
    return 1


def current_version() -> str | None:
    from mbats.errors import MbatsError
    from mbats.ml import registry

    try:
        return registry.resolve(alias=ALIAS).version
    except MbatsError as exc:  # no champion yet, or MLflow not reachable: try again later
        print(f"mlflow-serving: {exc}", file=sys.stderr, flush=True)
        return None


def main() -> int:
    from mbats.ml import registry
    from mbats.ml.serve import start_server, stop_server

    running, version = None, None
    stopping = False

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    STATE.write_text("waiting")
    try:
        while not stopping:
            latest = current_version()
            if latest and latest != version:
                if running is not None:
                    stop_server(running)
                uri = f"models:/{registry.model_name()}/{latest}"
                print(f"mlflow-serving: serving {uri} (@{ALIAS}) on {HOST}:{PORT}", flush=True)
                running = start_server(uri, HOST, PORT, timeout=300)
                version = latest
                STATE.write_text(f"serving {latest}")
            elif running is not None and running.poll() is not None:
                print("mlflow-serving: the model server exited; restarting", flush=True)
                version = None
                continue
            for _ in range(int(POLL * 10)):
                if stopping:
                    break
                time.sleep(0.1)
    finally:
        if running is not None:
            stop_server(running)
    return 0


if __name__ == "__main__":
    sys.exit(check() if sys.argv[1:] == ["--check"] else main())
