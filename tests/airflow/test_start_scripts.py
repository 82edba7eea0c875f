"""services/airflow/env.sh: the settings every component gets when nothing is configured."""

from __future__ import annotations

import os
import subprocess

from af_helpers import BIN, DAGS, ROOT

ENV_SH = ROOT / "services" / "airflow" / "env.sh"
KEYS = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__API__PORT", "AIRFLOW__API__BASE_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "AIRFLOW__CELERY__BROKER_URL")


def _resolve(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "AIRFLOW_HOME": str(tmp_path / "home"),
                "MBATS_AIRFLOW_DB": "airflow_envsh"}, **extra)
    script = f"source {ENV_SH} && " + " && ".join(f'echo "{k}=${{{k}:-}}"' for k in KEYS)
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def test_defaults_local_executor_one_port_everywhere_and_its_own_metadata_db(tmp_path, pg_server):
    from mbats.db import connect

    first = _resolve(tmp_path, AIRFLOW_API_PORT="18765")
    assert first["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and first["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert first["AIRFLOW__API__PORT"] == "18765"
    assert first["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18765"
    assert first["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18765/execution/"
    assert first["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS) and first["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert first["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert first["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/airflow_envsh")
    assert first["AIRFLOW__CELERY__BROKER_URL"] == ""  # only with the CeleryExecutor
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    conn = connect("risk")  # the metadata database was created on the platform's server
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow_envsh'")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()

    again = _resolve(tmp_path, AIRFLOW__CORE__EXECUTOR="CeleryExecutor", MBATS_REDIS_URL="redis://127.0.0.1:16399/0",
                     AIRFLOW_ADMIN_PASSWORD="s3cret-from-env")
    # every component started from the same AIRFLOW_HOME shares the generated JWT secret
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == first["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert again["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:16399/0"
    passwords = again["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert open(passwords).read() == '{"admin": "s3cret-from-env"}'
    assert oct(os.stat(passwords).st_mode & 0o777) == "0o600"
