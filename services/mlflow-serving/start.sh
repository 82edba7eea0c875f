#!/usr/bin/env bash
# mlflow-serving: the @champion model over REST (POST /invocations, GET /ping), following the alias.
# PYTHON: the interpreter with mbats + mlflow installed (default: python on PATH).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$HERE/serve_champion.py" "$@"
