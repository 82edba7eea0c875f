#!/usr/bin/env bash
# As the official minio image: a program name runs as is, anything else is `minio ARGS`.
set -euo pipefail
if [[ $# -gt 0 ]] && command -v "$1" >/dev/null 2>&1; then exec "$@"; fi
exec minio "$@"
