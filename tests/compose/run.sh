#!/usr/bin/env bash
# make test-compose: from a machine with Debian's packages and PyPI only, bring the real
# docker-compose.yml up on podman and run the end-to-end tests against it. Phases (each timed):
#   engine    podman + runc + debootstrap (apt, once), API socket, healthcheck loop   engine.sh
#   base      Debian bookworm base image (debootstrap, cached tarball)                base-image.sh
#   standins  postgres / redis / minio+mc / python / pgadmin stand-ins (input hash)   standins.sh
#   build     the project's images from services/*/Dockerfile (podman's layer cache;   compose build
#             also jupyter of the `tools` profile, started by test_compose_tools.py)
#   up        up -d --wait with --scale strategy-runner=2: healthy, *-init exited 0
#   e2e       pytest tests/compose (REST, SQL, S3, browser against the published ports)
#   down      down -v (images and caches stay in $MBATS_COMPOSE_CACHE)
# MBATS_COMPOSE_KEEP=1 leaves the stack running for a look (tests/compose/compose.sh ps);
# MBATS_COMPOSE_E2E=0 stops after `up` (bench/bench_compose.sh).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/compose"
CACHE="${MBATS_COMPOSE_CACHE:-$HOME/.cache/mbats-compose}"
PYTHON="$ROOT/.cache/venv/bin/python"
COMPOSE="$HERE/compose.sh"
export MBATS_COMPOSE_CACHE="$CACHE"
TIMES=()
STATUS=0

phase() {  # name command...: run, time, and stop the run on failure
  local name="$1" t0=$SECONDS rc=0
  shift
  echo "== compose test: $name"
  "$@" || rc=$?
  TIMES+=("$(printf '%-9s %4d s%s' "$name" $((SECONDS - t0)) "$([[ $rc -ne 0 ]] && echo '  FAILED')")")
  echo "== compose test: $name took $((SECONDS - t0)) s (exit $rc)"
  return $rc
}

summary() {
  echo "== compose test phases:"
  printf '   %s\n' "${TIMES[@]}"
  podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' 2>/dev/null \
    | grep -E 'mbats|localhost/|docker.io/' | sed 's/^/   image /' || true
}
trap summary EXIT

cleanup() {  # the test project's containers, volumes and networks, by compose's labels (no .env needed)
  local label="label=com.docker.compose.project=${MBATS_COMPOSE_PROJECT:-mbats-test}" ids
  ids="$(podman ps -aq --filter "$label")"; [[ -z "$ids" ]] || podman rm -f -t 10 $ids >/dev/null 2>&1
  ids="$(podman volume ls -q --filter "$label")"; [[ -z "$ids" ]] || podman volume rm -f $ids >/dev/null 2>&1
  ids="$(podman network ls -q --filter "$label")"; [[ -z "$ids" ]] || podman network rm -f $ids >/dev/null 2>&1
  return 0
}

env_file() {  # the test's .env, fresh from `make env`'s generator (every run starts from empty volumes)
  mkdir -p "$CACHE/project"
  "$PYTHON" -m mbats.stack.envfile --example "$ROOT/.env.example" --out "$CACHE/project/test.env" --force
  # offline, as docs/stack.md tells a user: data and orders go to the oanda-sim container, which
  # shares the token with its clients
  "$PYTHON" - "$CACHE/project/test.env" <<'PY'
import re, secrets, sys
path = sys.argv[1]
text = open(path).read()
token = re.search(r"^MBATS_OANDA_TOKEN=(.+)$", text, re.M)
values = {"MBATS_OANDA_ENVIRONMENT": "sim", "MBATS_OANDA_TOKEN": token.group(1) if token else secrets.token_hex(16)}
for key, value in values.items():
    text, n = re.subn(rf"^#? ?{key}=.*$", f"{key}={value}", text, flags=re.M)
    if not n:
        text += f"\n{key}={value}\n"
open(path, "w").write(text)
PY
  # free loopback ports for everything compose publishes
  "$PYTHON" - "$CACHE/project/ports.env" <<'PY'
import socket, sys
names = ["POSTGRES_PORT", "MINIO_PORT", "MINIO_CONSOLE_PORT", "MLFLOW_PORT", "MLFLOW_SERVING_PORT",
         "AIRFLOW_PORT", "SUPERSET_PORT", "OANDA_SIM_PORT", "JUPYTER_PORT", "PGADMIN_PORT"]
socks = []
for _ in names:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
with open(sys.argv[1], "w") as f:
    for name, s in zip(names, socks):
        f.write(f"{name}={s.getsockname()[1]}\n")
PY
  cat "$CACHE/project/ports.env" | tr '\n' ' '; echo
}

up() {
  if ! timeout 1500 "$COMPOSE" up -d --wait --wait-timeout 1200 --scale strategy-runner=2; then
    "$COMPOSE" ps -a
    for svc in $("$COMPOSE" ps -a --format '{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}' \
                 | awk '$2 != "running" && $4 != 0 || $3 == "unhealthy" || $3 == "starting" {print $1}' | sort -u); do
      echo "---- logs of $svc"; "$COMPOSE" logs --no-color --tail 60 "$svc"
    done
    return 1
  fi
  "$COMPOSE" ps -a --format 'table {{.Service}}\t{{.State}}\t{{.Health}}\t{{.ExitCode}}'
}

build() {
  # one service per image: several services share the mbats and superset images (and their build
  # sections), and the classic builder would build each of them again, in parallel
  local services
  local -x COMPOSE_PROFILES=offline,tools  # jupyter too (test_compose_tools.py starts it)
  services="$("$COMPOSE" config --format json | "$PYTHON" -c '
import json, sys
seen = {}
for name, svc in sorted(json.load(sys.stdin)["services"].items()):
    if "build" in svc:
        seen.setdefault(svc.get("image", name), name)
print(" ".join(seen.values()))')"
  echo "building: $services"
  "$COMPOSE" build $services
}

e2e() {
  # --confcutdir: not the main suite's conftest (it would start an embedded PostgreSQL)
  "$PYTHON" -m pytest "$HERE" -v --durations=10 -p no:cacheprovider --confcutdir="$HERE"
}

down() {
  [[ "${MBATS_COMPOSE_KEEP:-}" == 1 ]] && { echo "stack kept (MBATS_COMPOSE_KEEP=1)"; return 0; }
  COMPOSE_PROFILES=offline,tools "$COMPOSE" down -v --remove-orphans
  podman image prune -f >/dev/null 2>&1 || true  # layers of images the build replaced
  "$HERE/engine.sh" down  # no background process outlives the test (images stay)
}

phase engine "$HERE/engine.sh" up || exit 1
eval "$("$HERE/engine.sh" env)"
phase base "$HERE/base-image.sh" || exit 1
phase standins "$HERE/standins.sh" || exit 1
# a previous run that stopped half-way may have left containers: start from empty volumes
phase clean cleanup || exit 1
phase env env_file || exit 1
phase build build || exit 1
if phase up up; then
  [[ "${MBATS_COMPOSE_E2E:-1}" == 0 ]] || phase e2e e2e || STATUS=1
else
  STATUS=1
fi
phase down down || STATUS=1
exit $STATUS
