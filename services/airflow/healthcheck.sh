#!/usr/bin/env bash
# Container health per Airflow component: healthcheck.sh COMPONENT (default: the start.sh argument
# of PID 1). Cheap on purpose, as they run every 30 s in every container: no Airflow CLI start.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
component="${1:-$(tr '\0' ' ' < /proc/1/cmdline | awk '{print $3}')}"
case "$component" in
  api-server) exec python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v2/monitor/health' % os.environ.get('AIRFLOW_API_PORT', '8080'), timeout=8)" ;;
  scheduler)  exec python "$HERE/job_alive.py" SchedulerJob ;;
  dag-processor) exec python "$HERE/job_alive.py" DagProcessorJob ;;
  triggerer)  exec python "$HERE/job_alive.py" TriggererJob ;;
  worker|strategy-runner|celery)
    exec python "$HERE/celery_ping.py" ;;
  *) exit 0 ;;
esac
