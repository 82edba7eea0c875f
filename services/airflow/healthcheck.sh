#!/usr/bin/env bash
# Container health per component (the component is the container's start.sh argument, PID 1).
set -euo pipefail
component="$(tr '\0' ' ' < /proc/1/cmdline | awk '{print $3}')"
case "$component" in
  api-server) exec python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v2/monitor/health' % os.environ.get('AIRFLOW_API_PORT', '8080'), timeout=8)" ;;
  scheduler)  exec airflow jobs check --job-type SchedulerJob --local ;;
  dag-processor) exec airflow jobs check --job-type DagProcessorJob --local ;;
  triggerer)  exec airflow jobs check --job-type TriggererJob --local ;;
  worker|strategy-runner)
    exec celery --app airflow.providers.celery.executors.celery_executor.app inspect ping \
      --destination "celery@${HOSTNAME}" --timeout 10 ;;
  *) exit 0 ;;
esac
