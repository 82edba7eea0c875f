"""Airflow test fixtures (run by the Airflow venv: `.cache/venv-airflow/bin/python -m pytest tests/airflow`).

Airflow reads its configuration when first imported, so the environment is set up by a
session fixture before any test imports it: AIRFLOW_HOME in a temp folder and the metadata DB
a new database on the session's embedded PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers next to this file
from af_helpers import BIN, DAGS, ROOT, airflow_cli, metadata_url  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def airflow_env(pg_server, tmp_path_factory):
    """Environment for in-process Airflow (DagBag, dag.test) with its metadata DB on the embedded Postgres."""
    home = tmp_path_factory.mktemp("airflow-home")
    values = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url("airflow_test"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "MBATS_DEPLOYMENTS_FILE": str(ROOT / "strategies" / "deployments.yaml"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def airflow_db(airflow_env):
    """Migrate the metadata DB and serialize the DAGs (dag.test needs them serialized)."""
    airflow_cli("db", "migrate")
    airflow_cli("dags", "reserialize")
    return airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def dagbag(airflow_env):
    from airflow.models import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session")
def samples_loaded(pg_server):
    from mbats.db import connect
    from mbats.secmaster.samples import load_samples

    conn = connect("secmaster")
    try:
        load_samples(conn)
        conn.commit()
    finally:
        conn.close()
    return True
