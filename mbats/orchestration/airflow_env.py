"""Settings the Airflow start scripts derive from MBATS' own (``python -m mbats.orchestration.airflow_env``).

``metadata-url``: the SQLAlchemy URL of Airflow's metadata database, a database of its own
(``MBATS_AIRFLOW_DB``, default ``airflow``) on the platform's PostgreSQL, created if missing.
"""

from __future__ import annotations

import sys


def metadata_url(database: str | None = None) -> str:
    from mbats.config import Settings
    from mbats.db import database_url, ensure_database

    name = database or Settings().airflow_db
    ensure_database(name)
    return database_url(name, driver="postgresql+psycopg2")


def worker_hostname() -> str:
    """``[core] hostname_callable``: ``MBATS_WORKER_NAME`` if set (several workers on one host), else the FQDN."""
    import socket

    from mbats.config import Settings

    return Settings().worker_name or socket.getfqdn()


def main(argv: list[str]) -> int:
    if argv[:1] == ["metadata-url"]:
        print(metadata_url(argv[1] if len(argv) > 1 else None))
        return 0
    print("usage: python -m mbats.orchestration.airflow_env metadata-url [database]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
