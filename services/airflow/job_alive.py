"""Healthcheck of the Airflow job process (scheduler, dag-processor, triggerer) in this container.

The test of `airflow jobs check --job-type TYPE --local`: a running job of that type on this host
with a recent heartbeat, read from the metadata DB with psycopg2 instead of through the Airflow CLI,
whose start costs ~8 s of CPU per check (three such checks every 30 s keep a 2-core host busy).

    python job_alive.py SchedulerJob|DagProcessorJob|TriggererJob
Settings: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, MBATS_JOB_HEALTH_SECONDS (heartbeat age, 120).
"""

from __future__ import annotations

import os
import sys

import psycopg2

from mbats.orchestration.airflow_env import worker_hostname


def main(job_type: str) -> int:
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    dsn = "postgresql://" + url.split("://", 1)[1]  # postgresql+psycopg2:// -> libpq URL
    seconds = int(os.environ.get("MBATS_JOB_HEALTH_SECONDS", "120"))
    with psycopg2.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM job WHERE job_type = %s AND state = 'running' AND hostname = %s "
                    "AND latest_heartbeat > now() - make_interval(secs => %s)", (job_type, worker_hostname(), seconds))
        alive = cur.fetchone()[0]
    conn.close()
    print(f"{alive} alive {job_type} on {worker_hostname()}")
    return 0 if alive else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
