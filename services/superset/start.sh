#!/usr/bin/env bash
# Superset for MBATS, with or without Docker. Idempotent on every start:
#   start.sh init    upgrade the metadata DB, create/refresh the admin, init roles, import the dashboards
#   start.sh serve   gunicorn only
#   start.sh         both (the default)
# Settings (environment): SUPERSET_SECRET_KEY, SUPERSET_DATABASE_URI (see superset_config.py),
# SUPERSET_ADMIN_PASSWORD (required), SUPERSET_ADMIN_USER (admin), SUPERSET_ADMIN_EMAIL,
# MBATS_SUPERSET_DATA_URL (see bundle_zip.py), SUPERSET_HOST (0.0.0.0), SUPERSET_PORT (8088),
# SUPERSET_WORKERS (2), SUPERSET_BIN_DIR (folder of the `superset` and `gunicorn` programs; default: PATH).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export SUPERSET_CONFIG_PATH="${SUPERSET_CONFIG_PATH:-$HERE/superset_config.py}"
export FLASK_APP="superset.app:create_app()"
BIN="${SUPERSET_BIN_DIR:+$SUPERSET_BIN_DIR/}"
PY="${BIN}python"; [ -n "$BIN" ] || PY=python3
MODE="${1:-all}"

init() {
    : "${SUPERSET_ADMIN_PASSWORD:?SUPERSET_ADMIN_PASSWORD is not set}"
    : "${MBATS_SUPERSET_DATA_URL:?MBATS_SUPERSET_DATA_URL is not set}"
    local user="${SUPERSET_ADMIN_USER:-admin}"
    "$PY" "$HERE/wait_db.py"
    echo "superset: upgrading the metadata database"
    "${BIN}superset" db upgrade
    echo "superset: admin user '$user'"
    "${BIN}superset" fab create-admin --username "$user" --firstname MBATS --lastname Admin \
        --email "${SUPERSET_ADMIN_EMAIL:-admin@mbats.local}" --password "$SUPERSET_ADMIN_PASSWORD"
    # create-admin leaves an existing user alone: keep its password in step with the settings
    "${BIN}superset" fab reset-password --username "$user" --password "$SUPERSET_ADMIN_PASSWORD"
    echo "superset: roles and permissions"
    "${BIN}superset" init
    local zip
    zip="$(mktemp -d)/mbats_dashboards.zip"
    "$PY" "$HERE/bundle_zip.py" "$zip" >/dev/null
    echo "superset: importing the dashboards"
    "${BIN}superset" import-dashboards -p "$zip" -u "$user"
    "$PY" "$HERE/sync_assets.py" "$zip" "$user"
    rm -rf "$(dirname "$zip")"
}

serve() {
    exec "${BIN}gunicorn" --bind "${SUPERSET_HOST:-0.0.0.0}:${SUPERSET_PORT:-8088}" \
        --workers "${SUPERSET_WORKERS:-2}" --worker-class gthread --threads 4 --timeout 120 \
        --limit-request-line 0 --limit-request-field_size 0 "superset.app:create_app()"
}

case "$MODE" in
    init) init ;;
    serve) serve ;;
    all) init; serve ;;
    *) echo "usage: $0 [init|serve|all]" >&2; exit 2 ;;
esac
