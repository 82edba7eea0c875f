#!/usr/bin/env bash
# Compose stack timing (issue 12): from a machine without Docker to every compose service healthy,
# phase by phase (engine, base image, stand-ins, project image builds, up --wait), plus image sizes.
#   bench/bench_compose.sh           cold: a fresh, empty cache folder (everything built from nothing)
#   bench/bench_compose.sh --warm    warm: the usual cache (~/.cache/mbats-compose), what CI reuses
# The end-to-end tests are skipped; the stack is taken down at the end. Heavy (a cold run builds
# ~4.5 GB of images): not part of `make bench`. Figures: bench/RESULTS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${1:-}" != --warm ]]; then
  export MBATS_COMPOSE_CACHE="$(mktemp -d "${TMPDIR:-/tmp}/mbats-compose-cold.XXXXXX")"
  trap 'tests/compose/engine.sh down; rm -rf "$MBATS_COMPOSE_CACHE"' EXIT
  echo "cold run in $MBATS_COMPOSE_CACHE"
fi
cd "$ROOT"
start=$SECONDS
MBATS_COMPOSE_E2E=0 tests/compose/run.sh
echo "bare -> healthy -> down: $((SECONDS - start)) s"
