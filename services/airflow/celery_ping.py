"""Healthcheck of the Celery worker in this container (airflow-worker, strategy-runner): it answers
a ping over the broker. Celery's API instead of `celery inspect ping`, whose CLI scans every
installed package's plugins first (~13 s on a busy 2-core host, for every check).

Settings: AIRFLOW__CELERY__BROKER_URL; the worker's name is celery@$HOSTNAME (Celery's default).
"""

from __future__ import annotations

import os
import socket
import sys

from celery import Celery


def main() -> int:
    name = f"celery@{os.environ.get('HOSTNAME') or socket.gethostname()}"
    app = Celery(broker=os.environ["AIRFLOW__CELERY__BROKER_URL"])
    replies = app.control.ping(destination=[name], timeout=10)
    print(replies or f"no answer from {name}")
    return 0 if any(name in reply for reply in replies) else 1


if __name__ == "__main__":
    sys.exit(main())
