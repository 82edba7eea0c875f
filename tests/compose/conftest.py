"""Fixtures of the compose e2e tests (run by tests/compose/run.sh after `up --wait`; the suite is
collected with --confcutdir here, so the main suite's embedded PostgreSQL is not started)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "stack"), str(ROOT / "tests" / "superset")]
from compose_steps import read_env  # noqa: E402
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def stack() -> dict:
    import os

    cache = Path(os.environ.get("MBATS_COMPOSE_CACHE", Path.home() / ".cache" / "mbats-compose"))
    env = read_env(cache / "project" / "test.env") | read_env(cache / "project" / "ports.env")
    url = lambda port: f"http://127.0.0.1:{env[port]}"  # noqa: E731
    db = f"postgresql://mbats:{env['MBATS_DB_PASSWORD']}@127.0.0.1:{env['POSTGRES_PORT']}"
    return {
        "env_values": env, "env_file": cache / "project" / "test.env", "db": db,
        "urls": {"airflow": url("AIRFLOW_PORT"), "superset": url("SUPERSET_PORT"), "mlflow": url("MLFLOW_PORT"),
                 "serving": url("MLFLOW_SERVING_PORT"), "sim": url("OANDA_SIM_PORT"), "s3": url("MINIO_PORT"),
                 "jupyter": url("JUPYTER_PORT")},
        "airflow_password": env["AIRFLOW_ADMIN_PASSWORD"],
        "superset_user": env.get("SUPERSET_ADMIN_USER") or "admin",
        "superset_password": env["SUPERSET_ADMIN_PASSWORD"],
        "mlflow_user": env.get("MLFLOW_ADMIN_USER") or "admin",
        "mlflow_password": env["MLFLOW_ADMIN_PASSWORD"],
    }


@pytest.fixture(scope="session")
def airflow(stack):
    from stack_steps import airflow_client

    client = airflow_client(stack)
    yield client
    client.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
