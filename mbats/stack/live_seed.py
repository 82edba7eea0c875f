"""First start of a stack: a short paper session on the OANDA simulator, so the Live dashboard
shows a session (P&L, orders, fills, positions) before anyone has traded.

Idempotent: nothing happens once the risk database holds any paper or live run. The session is
simulator data and says so everywhere it shows: the simulator's account is ``oanda-sim-demo``,
the run records ``broker.environment = sim`` and ``broker.seed`` (the dashboards' run label ends
in ``[oanda-sim]`` and their ``source`` column reads ``oanda-sim``). It runs on a simulator of
its own, started here on loopback (the same code and v20 protocol as the stack's oanda-sim
service), so the stack's simulator account, clock and kill switch stay untouched: a seeded
random walk of the last day's minute bars, its clock put ``bars`` bars before the end and moved
one bar per bar traded (``--sim-step``), so the session's bars and fills carry today's times
(on a weekend: Friday's, the simulator keeps no weekend bars).

``python -m mbats.stack.live_seed`` runs it against the configured risk database; the local
stack's ``up`` runs that (in a subprocess with a time limit) whenever no paper/live run exists.
The session sends no alerts.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

log = logging.getLogger(__name__)

SIM_ACCOUNT = "oanda-sim-demo"
SESSION_KEY = "stack-first-start@oanda-sim"
STRATEGY, PARAMS = "sma_crossover", {"fast": 3, "slow": 8}
INSTRUMENTS = ("EUR_USD", "GBP_USD")
GRANULARITY = "M1"


@dataclass
class SeedResult:
    seeded: bool
    run_id: int | None = None
    reason: str = ""
    live_bars: int = 0


def live_runs(conn) -> int:
    """How many paper or live runs the risk database holds."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE mode IN ('paper', 'live')")
        count = cur.fetchone()[0]
    conn.rollback()
    return int(count)


def seed_live_session(bars: int = 60, settings=None, now: datetime | None = None) -> SeedResult:
    """Run the first-start paper session unless a paper/live run exists; say what happened."""
    from mbats.db import connect

    conn = connect("risk")
    try:
        existing = live_runs(conn)
    finally:
        conn.close()
    if existing:
        return SeedResult(False, reason=f"{existing} paper/live run(s) already recorded")
    return sim_paper_session(bars, settings, now)


def sim_paper_session(bars: int = 60, settings=None, now: datetime | None = None) -> SeedResult:
    """The session itself, whatever the database holds: ``bars`` minute bars up to ``now``."""
    from pydantic import SecretStr

    from mbats.config import get_settings
    from mbats.kernel.limits import RiskLimits
    from mbats.live.config import LiveConfig
    from mbats.live.session import run
    from mbats.db import connect
    from mbats.risk import store as risk_store
    from mbats.sim import SimConfig, SimServer, Simulator, synthetic_bars

    end = (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    replay = {s: synthetic_bars(s, end - timedelta(days=2), end, GRANULARITY, seed=18) for s in INSTRUMENTS}
    last = min(frame.index[-1] for frame in replay.values())  # the last complete bar's open
    clock = last - timedelta(minutes=bars - 1)  # `bars` bars still to replay, ending at the data's end
    token = "sim-seed"
    sim = Simulator(replay, GRANULARITY, SimConfig(token=token, account_id=SIM_ACCOUNT, start=clock,
                                                    max_requests_per_second=None, heartbeat_seconds=1.0))
    settings = settings or get_settings()
    # simulator fills are no news: no alerts (Telegram, Slack, webhooks) from this session
    silent = {k: None for k in ("alert_urls", "live_risk_webhook_url") if k in type(settings).model_fields}
    settings = settings.model_copy(update={
        "oanda_environment": "sim", "oanda_token": SecretStr(token), "oanda_account_id": SIM_ACCOUNT, **silent})
    quiet = logging.getLogger("oandapyV20")  # order look-ups by client id answer 404 by design; not news
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    with SimServer(sim) as server:
        settings = settings.model_copy(update={"oanda_sim_url": server.url})
        # ends with the data's last bar (`until` is that bar's close), whichever of the two comes first
        cfg = LiveConfig(STRATEGY, list(INSTRUMENTS), mode="paper", params=dict(PARAMS), granularity=GRANULARITY,
                         until=(last + timedelta(minutes=1)).to_pydatetime(), max_bars=bars, warmup=30,
                         units=10_000, session_key=SESSION_KEY, sim_step=True)
        try:
            result = run(cfg, risk=RiskLimits(), settings=settings)
        finally:
            quiet.setLevel(level)
    conn = connect("risk")
    try:
        risk_store.merge_run_broker(conn, result.run_id, {
            "seed": "stack first start: simulator data (a seeded random walk), not a market",
            "source": "oanda-sim"})
        conn.commit()
    finally:
        conn.close()
    return SeedResult(True, result.run_id, f"paper session on the simulator, {result.live_bars} bars",
                      result.live_bars)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    try:
        result = seed_live_session()
    except Exception as exc:  # noqa: BLE001 - a first-start nicety must not fail the stack
        print(f"warning: the first-start paper session on the simulator failed: {exc}", file=sys.stderr)
        return 0
    if result.seeded:
        print(f"live dashboard: run #{result.run_id} is a {result.reason}, labelled oanda-sim (simulator data)")
    else:
        print(f"live dashboard: not seeded ({result.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
