"""Wait until Superset's metadata database answers (superset-init runs it before `db upgrade`).

On a container network the name ``postgres`` may not resolve for a moment after a container
starts (podman's DNS server reloads as containers join), and an init container that fails
then is not restarted. Unreachable (name resolution, refused, timeout) is retried for
SUPERSET_DB_WAIT seconds (default 60); a wrong password or database fails at once.
"""

from __future__ import annotations

import os
import sys
import time

import sqlalchemy
from sqlalchemy.exc import OperationalError

FATAL = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def main() -> int:
    engine = sqlalchemy.create_engine(os.environ["SUPERSET_DATABASE_URI"], poolclass=sqlalchemy.pool.NullPool)
    deadline = time.monotonic() + float(os.environ.get("SUPERSET_DB_WAIT", "60"))
    said = False
    while True:
        try:
            with engine.connect():
                return 0
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if any(word in reason for word in FATAL) or time.monotonic() > deadline:
                print(f"superset: the metadata database (SUPERSET_DATABASE_URI) is not usable: {reason}",
                      file=sys.stderr)
                return 1
            if not said:
                print(f"superset: waiting for the metadata database ({reason})", flush=True)
                said = True
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
