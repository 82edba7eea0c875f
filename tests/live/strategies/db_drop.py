"""A test strategy for failure handling: on bar ``at`` the risk database drops the backtest's connection.

It terminates (pg_terminate_backend) every other connection whose application_name is ``victim``:
what a database restart or a dropped network does to a long backtest, seen from its connection.
"""

import backtrader as bt
import psycopg2

from mbats.db import database_url


class DbDrop(bt.Strategy):
    params = dict(at=5, victim="mbats-db-drop-victim")

    def next(self):
        if len(self) != self.p.at:
            return
        conn = psycopg2.connect(database_url("risk", driver="postgresql"), application_name="db-drop")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                            "AND pid <> pg_backend_pid()", (self.p.victim,))
                assert cur.fetchall(), "no connection to drop"
            conn.commit()
        finally:
            conn.close()
