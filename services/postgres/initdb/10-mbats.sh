#!/usr/bin/env bash
# First start of the postgres container (empty volume): one database and one login role per service,
# each role owning only its own database. Passwords come from the environment (.env via compose).
#   mbats     owns secmaster + risk (the library, Airflow tasks, strategy runners, Jupyter); CREATEROLE
#             so `mbats db upgrade` can create and grant the read-only Superset role for the views
#   airflow   owns airflow (metadata)          mlflow    owns mlflow + mlflow_auth (basic-auth users)
#   superset  owns superset (metadata)         mbats_superset: created by `mbats db upgrade`, SELECT on views only
set -euo pipefail
: "${MBATS_DB_PASSWORD:?}" "${AIRFLOW_DB_PASSWORD:?}" "${MLFLOW_DB_PASSWORD:?}" "${SUPERSET_DB_PASSWORD:?}"

psql_su() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres "$@"; }

role() {  # role password [extra attributes]
    psql_su -v role="$1" -v pw="$2" <<SQL
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L ${3:-}', :'role', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SQL
}

database() {  # name owner
    psql_su -v db="$1" -v owner="$2" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'db', :'owner') \gexec
SQL
}

role mbats "$MBATS_DB_PASSWORD" "CREATEROLE"
role airflow "$AIRFLOW_DB_PASSWORD"
role mlflow "$MLFLOW_DB_PASSWORD"
role superset "$SUPERSET_DB_PASSWORD"

database "${MBATS_SECMASTER_DB:-secmaster}" mbats
database "${MBATS_RISK_DB:-risk}" mbats
database airflow airflow
database mlflow mlflow
database mlflow_auth mlflow
database superset superset
echo "mbats: databases and roles created"
