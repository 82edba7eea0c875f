"""Superset configuration for MBATS: every setting from the environment, no default for secrets.

Required:
  SUPERSET_SECRET_KEY      signs sessions and encrypts the stored database passwords
  SUPERSET_DATABASE_URI    Superset's own metadata database (PostgreSQL), e.g.
                           postgresql+psycopg2://superset:pw@postgres:5432/superset
Optional:
  SUPERSET_ROW_LIMIT       default row limit of charts (50000)
"""

import os


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"{name} is not set; see services/superset/superset_config.py")
    return value


SECRET_KEY = _required("SUPERSET_SECRET_KEY")
SQLALCHEMY_DATABASE_URI = _required("SUPERSET_DATABASE_URI")
SQLALCHEMY_TRACK_MODIFICATIONS = False

# offline-friendly: no telemetry pixel, no examples
SCARF_ANALYTICS = False
ROW_LIMIT = int(os.environ.get("SUPERSET_ROW_LIMIT", "50000"))

FEATURE_FLAGS = {
    "DASHBOARD_RBAC": False,
    "ALERT_REPORTS": False,
}

# small in-process caches; the dashboards read views that change every minute in live trading
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
RATELIMIT_STORAGE_URI = "memory://"
