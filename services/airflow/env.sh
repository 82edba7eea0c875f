#!/usr/bin/env bash
# Airflow settings for MBATS, from MBATS_* / AIRFLOW_* environment variables (sourced by start.sh).
# Everything can be overridden with the usual AIRFLOW__SECTION__KEY variables; nothing secret has
# a default here: the JWT secret and the admin password come from the environment (or, for a
# local single-host run, are generated once under $AIRFLOW_HOME).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-${MBATS_HOME:-$ROOT/.mbats}/airflow}"
mkdir -p "$AIRFLOW_HOME"

export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
# airflow_local_settings.py: preloads MBATS' task code in the processes that fork tasks (fast task start)
export PYTHONPATH="$ROOT/services/airflow${PYTHONPATH:+:$PYTHONPATH}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
# LocalExecutor pre-forks `parallelism` workers; 32 (the default) costs ~1 GiB on a small host
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-60}"

# The API server: port 8080 hides in three settings; set all three from one variable.
AIRFLOW_API_HOST="${AIRFLOW_API_HOST:-127.0.0.1}"
AIRFLOW_API_PORT="${AIRFLOW_API_PORT:-8081}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-$AIRFLOW_API_HOST}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-$AIRFLOW_API_PORT}"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://127.0.0.1:$AIRFLOW_API_PORT}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:$AIRFLOW_API_PORT/execution/}"

# The metadata DB: its own database ("airflow") on the platform's PostgreSQL unless given.
if [[ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]]; then
  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$(python -m mbats.orchestration.airflow_env metadata-url)"
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
fi

# Celery (only read with the CeleryExecutor): Redis broker; results default to the metadata DB.
if [[ "$AIRFLOW__CORE__EXECUTOR" == *Celery* ]]; then
  export AIRFLOW__CELERY__BROKER_URL="${AIRFLOW__CELERY__BROKER_URL:-${MBATS_REDIS_URL:-redis://127.0.0.1:6379/0}}"
  export AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT="${AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT:-86400}"
fi

# Auth: SimpleAuthManager; users "name:role" and their passwords from the environment.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
if [[ -n "${AIRFLOW_ADMIN_PASSWORD:-}" && -z "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-}" ]]; then
  (umask 077; python -c 'import json, os; print(json.dumps({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}), end="")' \
    > "$AIRFLOW_HOME/passwords.json")
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
fi
# Every component must share the JWT secret; generate one per AIRFLOW_HOME for single-host runs.
if [[ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]]; then
  if [[ ! -s "$AIRFLOW_HOME/jwt_secret" ]]; then
    (umask 077; python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$AIRFLOW_HOME/jwt_secret")
  fi
  AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/jwt_secret")"
  export AIRFLOW__API_AUTH__JWT_SECRET
fi
