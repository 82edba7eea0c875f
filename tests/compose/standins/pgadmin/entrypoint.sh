#!/usr/bin/env bash
# The parts of dpage/pgadmin4's /entrypoint.sh that MBATS relies on:
# - config_distro.py written on the first launch: the image's defaults, then every
#   PGADMIN_CONFIG_<NAME>=<python literal> as `NAME = <python literal>` (so
#   PGADMIN_CONFIG_SERVER_MODE=True means server mode);
# - on an empty /var/lib/pgadmin: PGADMIN_DEFAULT_EMAIL (checked like upstream) and
#   PGADMIN_DEFAULT_PASSWORD (or PGADMIN_DEFAULT_PASSWORD_FILE) become the first admin user, then the
#   servers of $PGADMIN_SERVER_JSON_FILE (default /pgadmin4/servers.json) are loaded for that user;
# - gunicorn, one worker with threads (pgAdmin's sessions need one process), on
#   PGADMIN_LISTEN_ADDRESS:PGADMIN_LISTEN_PORT (default 0.0.0.0:80).
# Not here: TLS, postfix for mail, preferences.json, an external config database.
set -euo pipefail
cd /pgadmin4

if [[ ! -s config_distro.py ]]; then
  python3 - <<'PY'
import os
lines = ["CA_FILE = '/etc/ssl/certs/ca-certificates.crt'", "LOG_FILE = '/dev/null'",
         "HELP_PATH = '../../docs'"]
lines += [f"{name.removeprefix('PGADMIN_CONFIG_')} = {value}" for name, value in sorted(os.environ.items())
          if name.startswith("PGADMIN_CONFIG_")]
with open("config_distro.py", "w") as f:
    f.write("\n".join(lines) + "\n")
PY
fi

if [[ ! -f /var/lib/pgadmin/pgadmin4.db ]]; then
  if [[ -n "${PGADMIN_DEFAULT_PASSWORD_FILE:-}" ]]; then
    PGADMIN_DEFAULT_PASSWORD="$(cat "$PGADMIN_DEFAULT_PASSWORD_FILE")"
  fi
  if [[ -z "${PGADMIN_DEFAULT_EMAIL:-}" || -z "${PGADMIN_DEFAULT_PASSWORD:-}" ]]; then
    echo "You need to define the PGADMIN_DEFAULT_EMAIL and PGADMIN_DEFAULT_PASSWORD or PGADMIN_DEFAULT_PASSWORD_FILE environment variables." >&2
    exit 1
  fi
  # pgAdmin's own check (run from its folder, as upstream: importing pgadmin here would be circular),
  # with PGADMIN_CONFIG_CHECK_EMAIL_DELIVERABILITY / _ALLOW_SPECIAL_EMAIL_DOMAINS / _GLOBALLY_DELIVERABLE
  if ! out="$(cd /pgadmin4/pgadmin/utils && python3 - "$PGADMIN_DEFAULT_EMAIL" <<'PY'
import ast, os, sys
from validation_utils import validate_email
defaults = {"CHECK_EMAIL_DELIVERABILITY": "False", "ALLOW_SPECIAL_EMAIL_DOMAINS": "[]", "GLOBALLY_DELIVERABLE": "True"}
config = {k: ast.literal_eval(os.environ.get(f"PGADMIN_CONFIG_{k}", v)) for k, v in defaults.items()}
sys.exit(0 if validate_email(sys.argv[1], config) else 1)
PY
)"; then
    echo "'$PGADMIN_DEFAULT_EMAIL' does not appear to be a valid email address. Please reset the PGADMIN_DEFAULT_EMAIL environment variable and try again." >&2
    echo "Validation output: $out" >&2
    exit 1
  fi
  # the config database's first migration creates the user from these
  export PGADMIN_SETUP_EMAIL="$PGADMIN_DEFAULT_EMAIL" PGADMIN_SETUP_PASSWORD="$PGADMIN_DEFAULT_PASSWORD"
  python3 setup.py setup-db
  servers="${PGADMIN_SERVER_JSON_FILE:-/pgadmin4/servers.json}"
  if [[ -f "$servers" ]]; then
    if [[ "${PGADMIN_CONFIG_SERVER_MODE:-}" == False ]]; then
      python3 setup.py load-servers "$servers"
    else
      python3 setup.py load-servers "$servers" --user "$PGADMIN_DEFAULT_EMAIL"
    fi
  fi
fi

exec gunicorn --limit-request-line "${GUNICORN_LIMIT_REQUEST_LINE:-8190}" --timeout 86400 \
  --bind "${PGADMIN_LISTEN_ADDRESS:-0.0.0.0}:${PGADMIN_LISTEN_PORT:-80}" -w 1 --threads "${GUNICORN_THREADS:-25}" \
  --access-logfile "${GUNICORN_ACCESS_LOGFILE:--}" --chdir /pgadmin4 pgAdmin4:app
