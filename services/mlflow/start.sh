#!/usr/bin/env bash
# Start the MLflow tracking server: Postgres backend store, artifacts proxied to an S3 bucket.
# Used as the Docker image's entrypoint and, unchanged, on a host with mlflow installed.
#
#   MLFLOW_BACKEND_STORE_URI      postgresql+psycopg2://user:pw@host:5432/mlflow   (required)
#   MLFLOW_ARTIFACTS_DESTINATION  s3://mlflow  (default; a local folder also works)
#   MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  for the S3/MinIO server
#   MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (2)
#   MLFLOW_ENSURE_BUCKET (true): create the artifact bucket first; false when the caller makes it
#                                  (the local stack's `up` does, as soon as its S3 answers)
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql+psycopg2://mlflow:pw@postgres:5432/mlflow}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-s3://mlflow}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"

# The background job runners cost ~2 GB and MBATS does not use them.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# The artifact bucket must exist before the first upload; creating it is idempotent.
if [[ "${MLFLOW_ENSURE_BUCKET:-true}" == true && "$ARTIFACTS" == s3://* && -n "${MLFLOW_S3_ENDPOINT_URL:-}" ]]; then
    "$PYTHON" "$HERE/ensure_bucket.py" "$ARTIFACTS"
fi

exec mlflow server \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$ARTIFACTS" \
    --serve-artifacts \
    --host "${MLFLOW_HOST:-0.0.0.0}" \
    --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-2}" \
    ${MLFLOW_EXTRA_ARGS:-}
