#!/bin/sh
# One-shot MinIO setup (minio/mc image): the buckets MBATS uses and one service user with access
# to those buckets only (the root user stays for the console). Idempotent.
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${MBATS_S3_ACCESS_KEY:?}" "${MBATS_S3_SECRET_KEY:?}"
mc alias set mbats http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
for bucket in "${MBATS_S3_BUCKET_ARTIFACTS:-mlflow}" "${MBATS_S3_BUCKET_DATASETS:-datasets}" "${MBATS_S3_BUCKET_REPORTS:-reports}"; do
    mc mb --ignore-existing "mbats/$bucket"
done
cat > /tmp/mbats-policy.json <<JSON
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": [
  "arn:aws:s3:::${MBATS_S3_BUCKET_ARTIFACTS:-mlflow}", "arn:aws:s3:::${MBATS_S3_BUCKET_ARTIFACTS:-mlflow}/*",
  "arn:aws:s3:::${MBATS_S3_BUCKET_DATASETS:-datasets}", "arn:aws:s3:::${MBATS_S3_BUCKET_DATASETS:-datasets}/*",
  "arn:aws:s3:::${MBATS_S3_BUCKET_REPORTS:-reports}", "arn:aws:s3:::${MBATS_S3_BUCKET_REPORTS:-reports}/*"]}]}
JSON
mc admin policy create mbats mbats-buckets /tmp/mbats-policy.json
mc admin user add mbats "$MBATS_S3_ACCESS_KEY" "$MBATS_S3_SECRET_KEY"
mc admin policy attach mbats mbats-buckets --user "$MBATS_S3_ACCESS_KEY" || true  # already attached on re-runs
echo "minio: buckets and the mbats user are ready"
