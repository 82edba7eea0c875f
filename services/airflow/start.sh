#!/usr/bin/env bash
# Start one Airflow component for MBATS (in a container or as a local process):
#   start.sh migrate | api-server | scheduler | dag-processor | triggerer | worker | strategy-runner | all
# `worker` serves the default queue (downloads, housekeeping); `strategy-runner` serves the
# strategy queue (MBATS_STRATEGY_QUEUE, default strategy_runner: backtests, sweep configs, live
# sessions). `all` migrates and runs api-server, scheduler and dag-processor together (local use).
# In Docker every component runs from the one mbats image (services/mbats/Dockerfile).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"

component="${1:-all}"
shift || true
STRATEGY_QUEUE="${MBATS_STRATEGY_QUEUE:-strategy_runner}"
CONCURRENCY="${AIRFLOW_WORKER_CONCURRENCY:-2}"

case "$component" in
  migrate)         exec airflow db migrate "$@" ;;
  api-server)      exec airflow api-server --host "$AIRFLOW__API__HOST" --port "$AIRFLOW__API__PORT" "$@" ;;
  scheduler)       exec airflow scheduler "$@" ;;
  dag-processor)   exec airflow dag-processor "$@" ;;
  triggerer)       exec airflow triggerer "$@" ;;
  worker)          exec airflow celery worker --queues "${AIRFLOW_WORKER_QUEUES:-default}" --concurrency "$CONCURRENCY" "$@" ;;
  strategy-runner) exec airflow celery worker --queues "${AIRFLOW_WORKER_QUEUES:-$STRATEGY_QUEUE}" --concurrency "$CONCURRENCY" "$@" ;;
  all)
    airflow db migrate
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
    "$0" api-server & pids+=($!)
    "$0" scheduler & pids+=($!)
    "$0" dag-processor & pids+=($!)
    echo "Airflow UI: $AIRFLOW__API__BASE_URL (user admin; password: \$AIRFLOW_ADMIN_PASSWORD or $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
    wait -n "${pids[@]}"
    ;;
  *) echo "usage: $0 migrate|api-server|scheduler|dag-processor|triggerer|worker|strategy-runner|all" >&2; exit 2 ;;
esac
