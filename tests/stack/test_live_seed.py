"""The stack's first-start step for the Live dashboard (mbats.stack.live_seed), as `stack up` runs it,
against the session's embedded PostgreSQL and the OANDA simulator: a short paper session is
recorded once, labelled as simulator data, and the dashboards' live views show it."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest


@pytest.fixture
def fresh_risk_db(monkeypatch):
    """A risk database of its own (no paper/live run yet, whatever other suites recorded)."""
    from mbats import db
    from mbats.config import reset_settings_cache
    from mbats.db.migrate import upgrade_all

    monkeypatch.setenv("MBATS_RISK_DB", f"risk_seed_{os.urandom(4).hex()}")
    reset_settings_cache()
    db.dispose_engines()
    upgrade_all()
    yield
    monkeypatch.undo()
    reset_settings_cache()
    db.dispose_engines()
    upgrade_all()  # the session's risk database gets its views back


def _rows(query: str, *args) -> list[tuple]:
    from mbats.db import connect

    conn = connect("risk")
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def test_first_start_records_one_labelled_paper_session_on_the_simulator(fresh_risk_db):
    from mbats.stack.live_seed import SIM_ACCOUNT, seed_live_session
    from mbats.stack.local import Stack

    said: list[str] = []
    Stack.load()._seed_live(said.append)  # what `stack up` runs while the services boot
    assert len(said) == 1 and "labelled oanda-sim" in said[0] and "paper session on the simulator" in said[0], said
    (run_id, mode, status, account, environment, seed), = _rows(
        "SELECT id, mode, status, account, broker ->> 'environment', broker ->> 'seed' FROM runs")
    assert (mode, status, account, environment) == ("paper", "finished", SIM_ACCOUNT, "sim")
    assert "simulator data" in seed and f"#{run_id}" in said[0]

    orders, fills = (_rows(f"SELECT count(*) FROM {t} WHERE run_id = %s", run_id)[0][0] for t in ("orders", "fills"))
    (bars, last_ts), = _rows("SELECT count(*), max(ts) FROM equity WHERE run_id = %s", run_id)
    assert bars >= 40 and fills >= 2 and orders >= fills  # the crossover traded during the session
    now = datetime.now(timezone.utc)
    assert (now - last_ts).days < 3  # the replay ends at the latest bar (Friday's at a weekend)

    # the dashboards name it as simulator data
    (label, source), = _rows("SELECT run_label, source FROM dash.live_pnl_today WHERE run_id = %s", run_id)
    assert label.endswith("[oanda-sim]") and source == "oanda-sim"
    assert {r[0] for r in _rows("SELECT run_label FROM dash.live_fills_today")} <= {label}
    (first_fill,), = _rows("SELECT min(ts) FROM fills WHERE run_id = %s", run_id)
    if first_fill.astimezone(timezone.utc).date() == now.date():  # a session that began today shows in full
        assert _rows("SELECT count(*) FROM dash.live_fills_today WHERE run_id = %s", run_id)[0][0] == fills

    # idempotent: a second start (or any existing paper/live run) leaves it alone
    again = seed_live_session()
    assert not again.seeded and "already recorded" in again.reason
    said.clear()
    Stack.load()._seed_live(said.append)
    assert said == [] and len(_rows("SELECT id FROM runs")) == 1
