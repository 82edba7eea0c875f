#!/usr/bin/env bash
# Run the Airflow tests with the Airflow venv (one word for the Makefile's EXTRA_TESTS list).
# They get their own pytest temp root: suites running at the same time prune /tmp/pytest-of-$USER,
# and the embedded PostgreSQL (run as an unprivileged user) must be able to enter it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$(mktemp -d /tmp/mbats-airflow-tests.XXXXXX)"
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
[[ $# -gt 0 ]] || set -- tests/airflow
PYTEST_DEBUG_TEMPROOT="$root" .cache/venv-airflow/bin/python -m pytest -v --durations=10 "$@"
