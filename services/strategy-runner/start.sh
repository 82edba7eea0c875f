#!/usr/bin/env bash
# A strategy runner: an Airflow Celery worker serving only the strategy queue (backtests, sweep
# configurations, live sessions). Scale with `docker compose up -d --scale strategy-runner=N`.
# Wraps services/airflow/start.sh so the container and a local process start the same way.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export AIRFLOW_WORKER_QUEUES="${AIRFLOW_WORKER_QUEUES:-${MBATS_STRATEGY_QUEUE:-strategy_runner}}"
export AIRFLOW_WORKER_CONCURRENCY="${AIRFLOW_WORKER_CONCURRENCY:-2}"
exec "$HERE/../airflow/start.sh" strategy-runner "$@"
