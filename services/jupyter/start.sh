#!/usr/bin/env bash
# JupyterLab behind a token (JUPYTER_TOKEN, required): the notebooks of the repository, mbats installed.
set -euo pipefail
: "${JUPYTER_TOKEN:?set JUPYTER_TOKEN (make env writes one into .env)}"
exec jupyter lab --ip "${JUPYTER_HOST:-0.0.0.0}" --port "${JUPYTER_PORT:-8888}" --no-browser \
    --ServerApp.token="$JUPYTER_TOKEN" --ServerApp.root_dir="${JUPYTER_ROOT:-/opt/mbats/notebooks}" "$@"
