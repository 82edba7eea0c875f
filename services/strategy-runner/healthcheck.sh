#!/usr/bin/env bash
# Healthy when this host's Celery worker answers a ping (airflow-worker and strategy-runner).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../airflow/healthcheck.sh" celery
