"""Fault soak for the live runner: paper sessions against the OANDA simulator under injected faults.

Each round starts a fresh simulator, injects a random mix of faults on the order path — answers
lost after OANDA processed the order (``lost_answer``), 5xx/429 before processing (``status``),
requests held past the client's timeout (``delay``) — and a dropped price stream, runs a session
that orders on every other bar, then compares the risk DB with the simulator's account. The figures
are the issue-16 report: faults tried, sessions that survived, duplicate orders (must be 0) and
risk-DB-vs-broker differences (must be 0).

It uses the configured database (the embedded PostgreSQL by default). Run:
``.cache/venv/bin/python bench/bench_live_faults.py [rounds]``.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections import Counter

from pydantic import SecretStr

from mbats.config import get_settings
from mbats.db import connect
from mbats.db.migrate import upgrade_all
from mbats.kernel.limits import RiskLimits
from mbats.live.config import LiveConfig
from mbats.live.session import run
from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, Fault, SimConfig, SimServer, Simulator, synthetic_bars


def _faults(rng: random.Random) -> list[Fault]:
    out = []
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["lost_answer", "lost_answer", "status", "delay"])
        after = rng.randint(0, 4)
        if kind == "lost_answer":
            out.append(Fault(kind="lost_answer", path="/orders", status=rng.choice([500, 502, 503, 504]), after=after))
        elif kind == "status":
            out.append(Fault(kind="status", path="/orders", status=rng.choice([429, 500, 503]), after=after,
                             count=rng.randint(1, 2)))
        else:
            out.append(Fault(kind="delay", path="/orders", seconds=1.3, after=after))
    out.append(Fault(kind="drop_stream", messages=rng.randint(2, 6)))
    return out


def one_round(seed: int) -> dict:
    rng = random.Random(seed)
    bars = {"EUR_USD": synthetic_bars("EUR_USD", "2024-03-05", "2024-03-06", "M10", seed=seed)}
    server = SimServer(Simulator(bars, "M10", SimConfig(heartbeat_seconds=0.3, stream_poll_seconds=0.01,
                                                        max_requests_per_second=None,
                                                        start="2024-03-05T04:00Z"))).start()
    try:
        faults = _faults(rng)
        for f in faults:
            server.sim.faults.add(f)
        settings = get_settings().model_copy(update={
            "oanda_environment": "sim", "oanda_token": SecretStr(DEFAULT_TOKEN), "oanda_account_id": DEFAULT_ACCOUNT,
            "oanda_sim_url": server.url, "oanda_retry_attempts": 4, "oanda_retry_max_wait": 0.5,
            "oanda_timeout_seconds": 1.0, "live_heartbeat_timeout": 3.0})
        cfg = LiveConfig("sma_crossover", ["EUR_USD"], params={"fast": "2", "slow": "4"}, granularity="M10",
                         max_bars=16, warmup=5, sim_step=True, units=1000)
        survived, error = True, None
        try:
            result = run(cfg, risk=RiskLimits(), settings=settings)
            run_id = result.run_id
        except Exception as exc:  # noqa: BLE001 - a failed session is a figure, not a crash of the bench
            survived, error, run_id = False, f"{type(exc).__name__}: {exc}", None
        fired = len(faults) - len(server.sim.faults.pending())
        txns = server.sim.account.transactions
        sent = [t["clientExtensions"]["id"] for t in txns if t.get("reason") == "CLIENT_ORDER"]
        dupes = sum(n - 1 for n in Counter(sent).values() if n > 1)
        sim_fills = {int(t["id"]): (float(t["units"]), float(t["price"])) for t in txns if t["type"] == "ORDER_FILL"}
        diffs = 0
        if run_id is not None:
            conn = connect("risk")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT fill_id, size, price FROM fills WHERE run_id = %s", (run_id,))
                    db_fills = {f: (s, p) for f, s, p in cur.fetchall()}
                    cur.execute("SELECT size FROM positions WHERE run_id = %s ORDER BY ts DESC LIMIT 1", (run_id,))
                    row = cur.fetchone()
            finally:
                conn.close()
            net = sum(t.current_units for t in server.sim.account.open_trades("EUR_USD"))
            diffs = len(set(db_fills.items()) ^ set(sim_fills.items())) + (0 if row and row[0] == net else 1)
        return {"faults": fired, "survived": survived, "error": error, "orders": len(sent), "duplicates": dupes,
                "differences": diffs, "answers_lost": server.sim.stats["answers_lost"]}
    finally:
        server.stop()


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    upgrade_all()
    started = time.perf_counter()
    results = [one_round(seed) for seed in range(1, rounds + 1)]
    for i, r in enumerate(results, 1):
        print(f"round {i:2d}: {r}")
    total = {k: sum(r[k] for r in results) for k in ("faults", "orders", "duplicates", "differences", "answers_lost")}
    print(f"\n{rounds} sessions, {sum(r['survived'] for r in results)} survived; faults fired {total['faults']} "
          f"(answers lost after processing {total['answers_lost']}); orders {total['orders']}; "
          f"duplicate orders {total['duplicates']}; risk DB vs broker differences {total['differences']}; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
