"""One-shot MLflow setup of the compose stack (service `mlflow-init`): one MLflow user per kind of
service instead of the admin everywhere, each with only the permissions it needs. Idempotent.

The server's basic-auth app gives every user READ on everything (default_permission = READ in
docker-compose.yml) and MANAGE on what it creates. So this job, as the admin, creates the
experiments and the registered model MBATS uses up front (the services never own them, hence can
never delete them) and grants EDIT where a service writes:

  mbats-runner   strategy runners: backtest and sweep runs, training runs, new model versions
  mbats-airflow  Airflow's default-queue tasks: the sweep's parent run, promoting @champion
  mbats-jupyter  notebooks (profile tools): research runs; reads models
  mbats-serving  mlflow-serving: reads the registered model (READ, nothing granted)

Environment: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD (the admin),
MLFLOW_{RUNNER,AIRFLOW,JUPYTER,SERVING}_PASSWORD, MBATS_MLFLOW_EXPERIMENT, MBATS_ML_EXPERIMENT,
MBATS_ML_MODEL_NAME.
"""

from __future__ import annotations

import os
import sys
import time

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

BACKTESTS = os.environ.get("MBATS_MLFLOW_EXPERIMENT", "mbats-backtests")
MODELS = os.environ.get("MBATS_ML_EXPERIMENT", "mbats-models")
MODEL_NAME = os.environ.get("MBATS_ML_MODEL_NAME", "mbats-fx-direction")

# user -> (password variable, [(resource type, resource key, permission)])
USERS = {
    "mbats-runner": ("MLFLOW_RUNNER_PASSWORD", [("experiment", BACKTESTS, "EDIT"), ("experiment", MODELS, "EDIT"),
                                                ("registered_model", MODEL_NAME, "EDIT")]),
    "mbats-airflow": ("MLFLOW_AIRFLOW_PASSWORD", [("experiment", BACKTESTS, "EDIT"),
                                                  ("registered_model", MODEL_NAME, "EDIT")]),
    "mbats-jupyter": ("MLFLOW_JUPYTER_PASSWORD", [("experiment", BACKTESTS, "EDIT"), ("experiment", MODELS, "EDIT")]),
    "mbats-serving": ("MLFLOW_SERVING_PASSWORD", []),
}


def fail(message: str) -> None:
    print(f"error: mlflow-init: {message}", file=sys.stderr)
    sys.exit(1)


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def ensure_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name, description="MBATS direction model; @champion is served")


def ensure_user(auth, username: str, password: str) -> None:
    try:
        auth.get_user(username)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        auth.create_user(username, password)
        return
    auth.update_user_password(username, password)  # .env may have new passwords


def grant(auth, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    try:
        auth.grant_user_permission(username, resource_type, resource_id, permission)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(username, resource_type, resource_id)
        auth.grant_user_permission(username, resource_type, resource_id, permission)


def main() -> int:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or fail("set MLFLOW_TRACKING_URI")
    missing = [var for var, _ in USERS.values() if not os.environ.get(var)]
    if missing:
        fail(f"set {', '.join(missing)} in .env")
    client = MlflowClient(tracking_uri=uri)
    for attempt in range(30):  # the server answers /health before its auth tables are ready
        try:
            ids = {BACKTESTS: experiment_id(client, BACKTESTS), MODELS: experiment_id(client, MODELS)}
            break
        except MlflowException as exc:
            if attempt == 29:
                fail(f"MLflow at {uri} refused the admin: {str(exc).splitlines()[0][:200]}")
            time.sleep(2)
    ensure_model(client, MODEL_NAME)
    auth = get_app_client("basic-auth", tracking_uri=uri)
    for username, (password_var, grants) in USERS.items():
        ensure_user(auth, username, os.environ[password_var])
        for resource_type, key, permission in grants:
            grant(auth, username, resource_type, ids.get(key, key) if resource_type == "experiment" else key,
                  permission)
        print(f"mlflow-init: {username}: " + (", ".join(f"{p} on {t} {k}" for t, k, p in grants) or "READ only"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
