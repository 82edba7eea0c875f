#!/usr/bin/env bash
# A container engine for the compose test on a machine without Docker (see docs/stack.md):
# Debian's podman + runc behind podman's Docker API socket, the `docker` CLI (if installed) or the
# Compose v2 binary of the project venv talking to it, and a loop that runs the healthchecks
# (podman 4.3 needs systemd timers for them; there is no systemd here). Idempotent and fast when
# already running. All state lives under $MBATS_COMPOSE_CACHE (default ~/.cache/mbats-compose),
# outside the checkout so CI's fresh clones reuse images and layers.
#
#   tests/compose/engine.sh up     install (apt) if needed, start the API socket + healthcheck loop
#   tests/compose/engine.sh down   stop both (containers and images stay)
#   tests/compose/engine.sh env    print the variables a shell needs (eval "$(engine.sh env)")
# It never touches the machine's own services: nothing here binds a TCP port.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${MBATS_COMPOSE_CACHE:-$HOME/.cache/mbats-compose}"
RUN="$CACHE/run"
SOCK="$RUN/podman.sock"
COMPOSE_BIN="${MBATS_COMPOSE_BIN:-$ROOT/.cache/venv/bin/docker-compose}"

print_env() {
  cat <<ENV
export CONTAINERS_CONF="$CACHE/containers.conf"
export CONTAINERS_STORAGE_CONF="$CACHE/storage.conf"
export DOCKER_HOST="unix://$SOCK"
export DOCKER_CONFIG="$CACHE/docker"
export DOCKER_BUILDKIT=0
export COMPOSE_BAKE=false
ENV
}

install_packages() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "engine: installing ${missing[*]} (apt)"
  local sudo=""; [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # podman brings netavark/aardvark-dns (networks with name resolution) and uidmap
  $sudo apt-get install -y -qq podman runc debootstrap >/dev/null
}

write_config() {
  mkdir -p "$CACHE/storage" "$RUN" "$CACHE/docker/cli-plugins"
  # crun fails here (cgroups hybrid mode); the default ulimits are above the hard limits
  local nofile nproc
  nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
  # at most 20000/32768 (what runc was seen to be allowed to set), never above the hard limits
  [[ "$nofile" == unlimited || "$nofile" -gt 20000 ]] && nofile=20000
  [[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
  cat > "$CACHE/containers.conf.new" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
[network]
network_config_dir = "$CACHE/networks"
CONF
  cat > "$CACHE/storage.conf.new" <<CONF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$RUN/storage"
CONF
  for f in containers.conf storage.conf; do
    if cmp -s "$CACHE/$f.new" "$CACHE/$f"; then rm "$CACHE/$f.new"; else mv "$CACHE/$f.new" "$CACHE/$f"; fi
  done
  ln -sf "$COMPOSE_BIN" "$CACHE/docker/cli-plugins/docker-compose"
  [[ -f "$CACHE/docker/config.json" ]] || echo '{}' > "$CACHE/docker/config.json"
}

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_service() {
  if alive "$RUN/service.pid" && [[ -S "$SOCK" ]]; then return 0; fi
  rm -f "$SOCK"
  nohup podman system service --time=0 "unix://$SOCK" > "$CACHE/service.log" 2>&1 &
  echo $! > "$RUN/service.pid"
  for _ in $(seq 100); do [[ -S "$SOCK" ]] && return 0; sleep 0.1; done
  echo "error: podman's API socket did not appear; see $CACHE/service.log" >&2
  exit 1
}

# Runs each health-checked container's check at its own interval (what podman's systemd timers
# would do): the Airflow checks start a Python CLI each, so running them more often overloads 2 cores.
start_healthchecks() {
  if alive "$RUN/health.pid"; then return 0; fi
  nohup bash -c '
    declare -A last interval
    while true; do
      now=$(date +%s)
      for c in $(podman ps -q --no-trunc --filter health=starting --filter health=healthy --filter health=unhealthy 2>/dev/null); do
        if [[ -z "${interval[$c]:-}" ]]; then
          secs=$(podman inspect --format "{{.Config.Healthcheck.Interval.Seconds}}" "$c" 2>/dev/null)
          secs=${secs%%.*}; [[ "$secs" =~ ^[0-9]+$ ]] && (( secs > 0 )) || secs=30
          interval[$c]=$secs
          last[$c]=$now  # the first check comes one interval after the start, as with Docker
          continue
        fi
        if (( now - ${last[$c]} >= ${interval[$c]} )) && [[ ! -e "$RUNDIR/hc-$c" ]]; then
          last[$c]=$now
          ( touch "$RUNDIR/hc-$c"; podman healthcheck run "$c" >/dev/null 2>&1; rm -f "$RUNDIR/hc-$c" ) &
        fi
      done
      sleep 2
    done' > "$CACHE/health.log" 2>&1 &
  echo $! > "$RUN/health.pid"
}

stop() {
  for name in health service; do
    if alive "$RUN/$name.pid"; then kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true; fi
    rm -f "$RUN/$name.pid"
  done
}

case "${1:-up}" in
  up)
    install_packages
    write_config
    eval "$(print_env)"
    start_service
    export RUNDIR="$RUN"
    rm -f "$RUN"/hc-*
    start_healthchecks
    podman --version
    ;;
  down) eval "$(print_env)"; stop ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
