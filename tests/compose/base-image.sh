#!/usr/bin/env bash
# The base image every stand-in builds on, without a registry: a minimal Debian bookworm made by
# debootstrap from this machine's apt mirror, with the host's CA certificates (HTTPS from builds
# goes through the machine's TLS proxy). The rootfs tarball is cached under $MBATS_COMPOSE_CACHE,
# keyed by this script, the mirror and the CA files; the image is re-imported only when missing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MBATS_COMPOSE_CACHE:-$HOME/.cache/mbats-compose}"
IMAGE=localhost/debian-base:bookworm
MIRROR="$(grep -h -o -E 'https?://[^ ]*debian/?$' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
          | grep -v security | head -1 || true)"
if [[ -z "$MIRROR" ]]; then
  MIRROR="$(grep -h -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CAS=(/usr/local/share/ca-certificates/*.crt)
[[ -e "${CAS[0]}" ]] || CAS=()
KEY="$( (cat "$0"; echo "$MIRROR"; cat "${CAS[@]}" 2>/dev/null) | sha256sum | cut -c1-16)"
TARBALL="$CACHE/base/debian-bookworm-$KEY.tar"

if [[ "$(podman image inspect --format '{{index .Labels "mbats.inputs"}}' "$IMAGE" 2>/dev/null)" == "$KEY" ]]; then
  echo "base: $IMAGE is up to date ($KEY)"; exit 0
fi
mkdir -p "$CACHE/base"
if [[ ! -s "$TARBALL" ]]; then
  rootfs="$(mktemp -d "$CACHE/base/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  echo "base: debootstrap bookworm from $MIRROR"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" > "$CACHE/base/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/base/debootstrap.log" >&2; echo "error: debootstrap failed (log: $CACHE/base/debootstrap.log)" >&2; exit 1; }
  for ca in "${CAS[@]}"; do cp "$ca" "$rootfs/usr/local/share/ca-certificates/"; done
  chroot "$rootfs" update-ca-certificates >/dev/null
  # the same apt sources inside the images as on the host (the mirror debootstrap used)
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" > "$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  rm -f "$CACHE"/base/debian-bookworm-*.tar
  tar -C "$rootfs" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
fi
podman import --change "LABEL mbats.inputs=$KEY" --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$TARBALL" "$IMAGE" >/dev/null
echo "base: imported $IMAGE ($KEY)"
