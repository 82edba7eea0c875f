#!/usr/bin/env bash
# Build the stand-in images (tests/compose/standins/*, see its README) on the Debian base and tag
# them with the names docker-compose.yml and services/*/Dockerfile use. Each image carries a label
# with the hash of its inputs (its folder + the base image's); an image whose inputs did not change
# is kept, so a warm run costs a few podman calls.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# folder, then the tags it gets (in build order: minio and pgadmin build on python)
STANDINS=(
  "python docker.io/library/python:3.11.11-slim-bookworm"
  "postgres docker.io/library/postgres:17.6-bookworm"
  "redis docker.io/library/redis:7.4.5-alpine"
  "minio docker.io/minio/minio:RELEASE.2025-04-22T22-12-26Z docker.io/minio/mc:RELEASE.2025-04-16T18-13-26Z"
  "pgadmin docker.io/dpage/pgadmin4:9.8"
)
label() { podman image inspect --format '{{index .Labels "mbats.inputs"}}' "$1" 2>/dev/null || true; }
base_key="$(label localhost/debian-base:bookworm)"
[[ -n "$base_key" ]] || { echo "error: localhost/debian-base:bookworm is missing; run tests/compose/base-image.sh" >&2; exit 1; }
python_key=""
for entry in "${STANDINS[@]}"; do
  read -r name first rest <<< "$entry"
  dir="$HERE/standins/$name"
  on_python=0; grep -q '^FROM docker.io/library/python:' "$dir/Dockerfile" && on_python=1
  key="$( (echo "$base_key"; [[ $on_python == 1 ]] && echo "$python_key"; \
           find "$dir" -type f | sort | xargs sha256sum | sed "s#$dir/##") | sha256sum | cut -c1-16)"
  [[ "$name" == python ]] && python_key="$key"
  uptodate=1
  for tag in $first $rest; do [[ "$(label "$tag")" == "$key" ]] || uptodate=0; done
  if [[ $uptodate == 1 ]]; then echo "stand-in $name: up to date ($key)"; continue; fi
  start=$SECONDS
  tags=(); for tag in $first $rest; do tags+=(-t "$tag"); done
  podman build -q --pull=never --label "mbats.inputs=$key" "${tags[@]}" "$dir" > /dev/null
  echo "stand-in $name: built in $((SECONDS - start)) s ($key)"
done
