#!/usr/bin/env bash
# Healthy when this host's Celery worker answers a ping (airflow-worker and strategy-runner).
set -euo pipefail
exec celery --app airflow.providers.celery.executors.celery_executor.app inspect ping \
    --destination "celery@${HOSTNAME}" --timeout 10
