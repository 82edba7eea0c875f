#!/usr/bin/env bash
# `docker compose` for the compose test's stack: the real docker-compose.yml, unchanged, with the
# `offline` profile (COMPOSE_PROFILES=offline,tools adds Jupyter)
# as project "mbats-test" (so a user's own `mbats` stack is never touched), the
# test's .env (written by `make env`'s generator) and published ports the run picked free (so the
# machine's own 5432/6379/... and other stacks are left alone). Needs tests/compose/engine.sh up.
#   tests/compose/compose.sh ps        tests/compose/compose.sh logs airflow-scheduler
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${MBATS_COMPOSE_CACHE:-$HOME/.cache/mbats-compose}"
eval "$("$ROOT/tests/compose/engine.sh" env)"
export COMPOSE_PROFILES="${COMPOSE_PROFILES:-offline}"
export COMPOSE_ENV_FILE="${COMPOSE_ENV_FILE:-$CACHE/project/test.env}"
# published ports (POSTGRES_PORT=..., see run.sh); the shell's values win over the env file's
if [[ -f "$CACHE/project/ports.env" ]]; then set -a; . "$CACHE/project/ports.env"; set +a; fi
exec "${MBATS_COMPOSE_BIN:-$ROOT/.cache/venv/bin/docker-compose}" --project-directory "$ROOT" \
  -f "$ROOT/docker-compose.yml" -p "${MBATS_COMPOSE_PROJECT:-mbats-test}" --env-file "$COMPOSE_ENV_FILE" "$@"
