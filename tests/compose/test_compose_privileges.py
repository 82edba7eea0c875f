"""Least privilege in the compose stack (issue 17): each container holds only its own secrets, no
container runs Redis or MinIO as root, each PostgreSQL role and MLflow user can do only what its
service needs. Checked on the running stack (tests/compose/run.sh), as an attacker inside one
container would see it: the container's environment, its processes, and what its credentials are
refused."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import psycopg2
import pytest
from compose_steps import containers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AIRFLOW_META = {"AIRFLOW_DB_PASSWORD", "REDIS_PASSWORD"}  # the metadata DB (Celery results) and the broker
AIRFLOW_CORE = AIRFLOW_META | {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"}
S3_USER = {"MBATS_S3_ACCESS_KEY", "MBATS_S3_SECRET_KEY"}
# service -> the .env secrets whose values may appear in its containers' environment
ALLOWED = {
    "postgres": {"POSTGRES_PASSWORD", "MBATS_DB_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD",
                 "SUPERSET_DB_PASSWORD"},
    "redis": {"REDIS_PASSWORD"},
    "minio-volume": set(),
    "minio": {"MINIO_ROOT_PASSWORD"},
    "minio-init": {"MINIO_ROOT_PASSWORD"} | S3_USER,
    "mlflow": {"MLFLOW_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY"} | S3_USER,
    "mlflow-init": {"MLFLOW_ADMIN_PASSWORD", "MLFLOW_RUNNER_PASSWORD", "MLFLOW_AIRFLOW_PASSWORD",
                    "MLFLOW_JUPYTER_PASSWORD", "MLFLOW_SERVING_PASSWORD"},
    "mlflow-serving": {"MLFLOW_SERVING_PASSWORD"},
    "mbats-init": {"MBATS_DB_PASSWORD", "MBATS_SUPERSET_DB_PASSWORD", "MBATS_RUNNER_DB_PASSWORD",
                   "MBATS_LOADER_DB_PASSWORD", "MBATS_SIM_DB_PASSWORD"},
    "airflow-init": AIRFLOW_CORE,
    "airflow-api-server": AIRFLOW_CORE | {"AIRFLOW_ADMIN_PASSWORD"},
    "airflow-scheduler": AIRFLOW_CORE,
    "airflow-dag-processor": AIRFLOW_CORE,
    "airflow-triggerer": AIRFLOW_CORE,
    "airflow-worker": AIRFLOW_META | {"MBATS_LOADER_DB_PASSWORD", "MLFLOW_AIRFLOW_PASSWORD", "MBATS_OANDA_TOKEN"},
    "strategy-runner": AIRFLOW_META | S3_USER | {"MBATS_RUNNER_DB_PASSWORD", "MLFLOW_RUNNER_PASSWORD",
                                                 "MBATS_OANDA_TOKEN"},
    "superset-init": {"SUPERSET_DB_PASSWORD", "SUPERSET_ADMIN_PASSWORD", "SUPERSET_SECRET_KEY",
                      "MBATS_SUPERSET_DB_PASSWORD"},
    "superset": {"SUPERSET_DB_PASSWORD", "SUPERSET_ADMIN_PASSWORD", "SUPERSET_SECRET_KEY",
                 "MBATS_SUPERSET_DB_PASSWORD"},
    "oanda-sim": {"MBATS_SIM_DB_PASSWORD", "MBATS_OANDA_TOKEN"},
    "jupyter": S3_USER | {"JUPYTER_TOKEN", "MBATS_RUNNER_DB_PASSWORD", "MLFLOW_JUPYTER_PASSWORD"},
    "pgadmin": {"PGADMIN_PASSWORD"},  # the database password is typed in pgAdmin, not passed to it
}
# the PostgreSQL role in each mbats-library container's MBATS_DATABASE_URL
DB_ROLE = {"mbats-init": "mbats", "airflow-worker": "mbats_loader", "strategy-runner": "mbats_runner",
           "oanda-sim": "mbats_sim", "mlflow-serving": "no-database-access", "airflow-scheduler": "no-database-access",
           "airflow-api-server": "no-database-access", "airflow-triggerer": "no-database-access",
           "airflow-dag-processor": "no-database-access", "airflow-init": "no-database-access"}


def secrets(stack: dict) -> dict[str, str]:
    """The .env secrets of the run (name -> value), long enough not to match by chance."""
    return {name: value for name, value in stack["env_values"].items()
            if any(word in name for word in ("PASSWORD", "SECRET", "KEY", "TOKEN")) and len(value) >= 8}


def inspect(name: str) -> dict:
    out = subprocess.run(["podman", "inspect", name], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)[0]


def test_every_container_holds_only_its_own_secrets(stack):
    values = secrets(stack)
    assert {"MLFLOW_ADMIN_PASSWORD", "AIRFLOW_FERNET_KEY", "MBATS_DB_PASSWORD", "MBATS_OANDA_TOKEN"} <= set(values)
    seen, foreign = set(), []
    for c in containers():
        service = c["Service"]
        assert service in ALLOWED, f"no secrets list for service {service}"
        seen.add(service)
        env = dict(item.split("=", 1) for item in inspect(c["Name"])["Config"]["Env"])
        for name, value in values.items():
            holders = [var for var, v in env.items() if value in v]
            if holders and name not in ALLOWED[service]:
                foreign.append(f"{c['Name']}: {name} in {holders}")
        if service in DB_ROLE:
            role = env["MBATS_DATABASE_URL"].split("//", 1)[1].split("@", 1)[0].split(":", 1)[0]
            assert role == DB_ROLE[service], (c["Name"], role)
    assert foreign == [], "\n".join(foreign)
    assert {"airflow-worker", "strategy-runner", "mlflow-serving", "mlflow-init", "oanda-sim"} <= seen


@pytest.mark.parametrize("service, uid", [("redis", 999), ("minio", 1000)])
def test_redis_and_minio_do_not_run_as_root(service, uid):
    [c, *_] = [c for c in containers() if c["Service"] == service]
    status = subprocess.run(["podman", "exec", c["Name"], "cat", "/proc/1/status"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert {int(u) for u in uids} == {uid}, status


def connect(stack: dict, role: str, database: str):
    password = stack["env_values"][{"mbats_runner": "MBATS_RUNNER_DB_PASSWORD", "mbats_loader": "MBATS_LOADER_DB_PASSWORD",
                                    "mbats_sim": "MBATS_SIM_DB_PASSWORD"}[role]]
    return psycopg2.connect(host="127.0.0.1", port=stack["env_values"]["POSTGRES_PORT"], user=role,
                            password=password, dbname=database, connect_timeout=20)


def refused(stack: dict, role: str, database: str, sql: str) -> str:
    """Run ``sql`` as ``role``; the error PostgreSQL gave (the test fails if it was allowed)."""
    try:
        conn = connect(stack, role, database)
    except psycopg2.OperationalError as exc:
        return str(exc)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except psycopg2.Error as exc:
        return exc.pgerror or str(exc)
    finally:
        conn.rollback()
        conn.close()
    pytest.fail(f"{role} was allowed on {database}: {sql}")


def test_service_roles_cannot_change_schemas_or_write_outside_their_part(stack):
    # only the init job's role owns the schemas' tables
    owners = set()
    for database in ("secmaster", "risk"):
        conn = psycopg2.connect(f"{stack['db']}/{database}")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
                owners |= {r[0] for r in cur.fetchall()}
                cur.execute("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                            "WHERE rolname IN ('mbats_runner', 'mbats_loader', 'mbats_sim')")
                assert {r[0]: r[1:] for r in cur.fetchall()} == {r: (False, False, False) for r in
                                                                  ("mbats_runner", "mbats_loader", "mbats_sim")}
        finally:
            conn.close()
    assert owners == {"mbats"}, owners
    # the loader (Airflow's default-queue workers) writes bars, nothing else
    assert "must be owner" in refused(stack, "mbats_loader", "secmaster", "ALTER TABLE bars ADD COLUMN x int")
    assert "permission denied" in refused(stack, "mbats_loader", "secmaster", "CREATE TABLE t (x int)")
    assert "permission denied" in refused(stack, "mbats_loader", "risk", "SELECT 1")
    # the runners write runs, never bars or schemas
    assert "must be owner" in refused(stack, "mbats_runner", "risk", "ALTER TABLE runs ADD COLUMN x int")
    assert "permission denied" in refused(stack, "mbats_runner", "secmaster", "DELETE FROM bars")
    assert "permission denied" in refused(stack, "mbats_runner", "risk", "TRUNCATE runs")
    # the simulator reads bars only
    assert "permission denied" in refused(stack, "mbats_sim", "secmaster", "DELETE FROM bars")
    assert "permission denied" in refused(stack, "mbats_sim", "risk", "SELECT 1")
    # and what they must be able to do still works
    conn = connect(stack, "mbats_loader", "secmaster")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bars")
            cur.execute("CREATE TEMP TABLE staging (x int)")  # the COPY staging table of a load
    finally:
        conn.close()


def mlflow_as(stack: dict, user: str, password_var: str):
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = user
    os.environ["MLFLOW_TRACKING_PASSWORD"] = stack["env_values"][password_var]
    return MlflowClient(tracking_uri=stack["urls"]["mlflow"])


def denied(call) -> str:
    from mlflow.exceptions import MlflowException

    try:
        call()
    except MlflowException as exc:
        return exc.error_code
    pytest.fail("allowed")


def test_each_service_has_its_own_mlflow_user_with_only_what_it_needs(stack):
    model = stack["env_values"].get("MBATS_ML_MODEL_NAME") or "mbats-fx-direction"
    try:
        runner = mlflow_as(stack, "mbats-runner", "MLFLOW_RUNNER_PASSWORD")
        experiment = runner.get_experiment_by_name("mbats-backtests")
        run = runner.create_run(experiment.experiment_id, run_name="privileges-check")
        runner.log_metric(run.info.run_id, "x", 1.0)
        runner.set_terminated(run.info.run_id)
        assert denied(lambda: runner.delete_registered_model(model)) == "PERMISSION_DENIED"
        assert denied(lambda: runner.delete_experiment(experiment.experiment_id)) == "PERMISSION_DENIED"

        serving = mlflow_as(stack, "mbats-serving", "MLFLOW_SERVING_PASSWORD")
        assert serving.get_registered_model(model).name == model  # it reads the model it serves
        assert denied(lambda: serving.create_run(experiment.experiment_id)) == "PERMISSION_DENIED"
        assert denied(lambda: serving.set_registered_model_tag(model, "x", "y")) == "PERMISSION_DENIED"
        assert denied(lambda: serving.delete_run(run.info.run_id)) == "PERMISSION_DENIED"

        airflow = mlflow_as(stack, "mbats-airflow", "MLFLOW_AIRFLOW_PASSWORD")
        assert denied(lambda: airflow.delete_registered_model(model)) == "PERMISSION_DENIED"
        # a service's user cannot make itself an admin
        r = httpx.patch(stack["urls"]["mlflow"] + "/api/2.0/mlflow/users/update-admin",
                        json={"username": "mbats-runner", "is_admin": True},
                        auth=("mbats-runner", stack["env_values"]["MLFLOW_RUNNER_PASSWORD"]), timeout=30)
        assert r.status_code == 403, r.text
    finally:
        os.environ["MLFLOW_TRACKING_USERNAME"] = stack["mlflow_user"]
        os.environ["MLFLOW_TRACKING_PASSWORD"] = stack["mlflow_password"]
