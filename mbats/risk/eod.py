"""End-of-day risk: VaR/CVaR, exposure by currency and historical stress tests, into ``eod_risk``.

The portfolio is the latest position snapshot of every active paper/live run (status ``running``,
or finished within ``recent_days``); ``modes`` / ``run_ids`` widen or narrow that. All money is
in the account currency (``MBATS_ACCOUNT_CURRENCY``, USD by default): a position of ``size`` units
of ``BASE_QUOTE`` at ``price`` is ``+size`` BASE and ``-size * price`` QUOTE, each valued through
the security master's latest close of the pair that converts it (direct, inverse, or through USD).

* **VaR / CVaR** (historical simulation, 1 day): today's positions revalued with each of the last
  ``lookback_days`` daily returns of their instruments; VaR is the loss at the (1 - confidence)
  quantile of that P&L, CVaR the mean loss beyond it.
* **Recent runs**: VaR/CVaR of each recent run's own daily equity returns (% of equity).
* **Stress**: the currency exposures hit with the one-day moves of historical FX shocks
  (:data:`HISTORICAL_SHOCKS`, approximate close-to-close moves against USD, so in an account
  currency A an exposure in C moves by (1 + move_C) / (1 + move_A) - 1) and the worst day in
  the scenario set.

Re-running a day replaces that day's rows (idempotent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
from psycopg2.extras import Json, execute_values

from mbats.risk.metrics import fx_daily

ACCOUNT_CCY = "USD"  # the default; compute(account_currency=…) / MBATS_ACCOUNT_CURRENCY choose another
HUB = "USD"
CONFIDENCE = (0.95, 0.99)
MIN_SCENARIOS = 20  # fewer daily returns than this: results are flagged as unreliable

# Approximate one-day moves of each currency against USD (+ = the currency gained on USD).
HISTORICAL_SHOCKS: dict[str, dict] = {
    "snb_floor_removal_2015_01_15": {
        "description": "SNB drops the EUR/CHF 1.20 floor", "moves": {"CHF": 0.186, "EUR": -0.003, "JPY": 0.01}},
    "brexit_vote_2016_06_24": {
        "description": "UK votes to leave the EU", "moves": {
            "GBP": -0.081, "EUR": -0.024, "JPY": 0.038, "AUD": -0.029, "NZD": -0.02, "CHF": 0.01, "CAD": -0.01}},
    "lehman_aftermath_2008_10_24": {
        "description": "carry-trade unwind after Lehman", "moves": {
            "AUD": -0.067, "NZD": -0.05, "GBP": -0.04, "EUR": -0.02, "JPY": 0.03, "CAD": -0.03, "CHF": 0.01}},
    "covid_dollar_squeeze_2020_03_19": {
        "description": "March 2020 dollar funding squeeze", "moves": {
            "AUD": -0.04, "NZD": -0.035, "GBP": -0.038, "EUR": -0.017, "JPY": -0.01, "CAD": -0.015, "CHF": -0.01,
            "MXN": -0.05}},
    "jpy_flash_crash_2019_01_03": {
        "description": "yen flash crash in thin Asian liquidity", "moves": {"JPY": 0.035, "AUD": -0.036, "NZD": -0.02}},
    "snb_floor_introduction_2011_09_06": {
        "description": "SNB caps the franc at EUR/CHF 1.20", "moves": {"CHF": -0.084}},
}


@dataclass
class Portfolio:
    positions: pd.DataFrame  # instrument, size, market_price, run_id, ts
    run_ids: list[int] = field(default_factory=list)


def _as_of(value: date | datetime | str | None) -> date:
    if value is None:
        return datetime.now(timezone.utc).date()
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


def _day_end(as_of: date) -> datetime:
    return datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=timezone.utc)


def open_positions(conn, as_of: date, modes=("paper", "live"), run_ids: list[int] | None = None,
                   recent_days: int = 1) -> Portfolio:
    """Latest position snapshot (at or before the end of ``as_of``) of each selected run."""
    end = _day_end(as_of)
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT DISTINCT ON (p.run_id, p.instrument) p.run_id, p.instrument, p.ts, p.size, p.market_price
              FROM positions p JOIN runs r ON r.id = p.run_id
             WHERE p.ts < %(end)s
               AND (%(ids)s::bigint[] IS NULL OR r.id = ANY(%(ids)s::bigint[]))
               AND (%(ids)s::bigint[] IS NOT NULL OR (r.mode = ANY(%(modes)s) AND
                    (r.status = 'running' OR r.finished_at >= %(since)s)))
             ORDER BY p.run_id, p.instrument, p.ts DESC
            """,
            {"end": end, "ids": run_ids, "modes": list(modes), "since": end - timedelta(days=recent_days + 1)},
        )
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=["run_id", "instrument", "ts", "size", "market_price"])
    frame = frame[frame["size"].abs() > 0].reset_index(drop=True)
    return Portfolio(frame, sorted(set(int(r) for r in frame["run_id"])))


def _daily_closes(secmaster, symbol: str, end: datetime, lookback_days: int) -> pd.Series:
    """Daily closes of one instrument up to ``end`` from the finest stored series that has data."""
    from mbats.errors import NotFoundError
    from mbats.secmaster.bars import read_bars

    start = end - timedelta(days=int(lookback_days * 1.6) + 10)
    for granularity in ("D", "H4", "H1", "M15", "M5", "M1"):
        try:
            bars = read_bars(secmaster, symbol, granularity, start, end)
        except NotFoundError:
            return pd.Series(dtype=float)
        if len(bars):
            closes = fx_daily(bars["close"])  # FX days (17:00 New York), not UTC calendar days
            return closes.iloc[-(lookback_days + 1):]
    return pd.Series(dtype=float)


def _direct_rate(secmaster, ccy: str, account: str, end: datetime) -> float | None:
    """``account`` per one unit of ``ccy`` from the latest close of CCY_ACCOUNT or ACCOUNT_CCY."""
    if ccy == account:
        return 1.0
    for symbol, invert in ((f"{ccy}_{account}", False), (f"{account}_{ccy}", True)):
        closes = _daily_closes(secmaster, symbol, end, 5)
        if len(closes):
            last = float(closes.iloc[-1])
            return 1.0 / last if invert else last
    return None


def account_rate(secmaster, ccy: str, end: datetime, cache: dict, account: str = ACCOUNT_CCY) -> float | None:
    """``account`` per one unit of ``ccy``: the pair that converts, direct or inverse, else through USD."""
    if (ccy, account) in cache:
        return cache[(ccy, account)]
    rate = _direct_rate(secmaster, ccy, account, end)
    if rate is None and HUB not in (ccy, account):
        to_hub, from_hub = _direct_rate(secmaster, ccy, HUB, end), _direct_rate(secmaster, HUB, account, end)
        rate = to_hub * from_hub if to_hub is not None and from_hub is not None else None
    cache[(ccy, account)] = rate
    return rate


def stress_pnl(exposure: dict[str, float], moves: dict[str, float], account: str = ACCOUNT_CCY) -> dict[str, float]:
    """Account-currency P&L per currency of ``exposure`` under ``moves`` (each against USD)."""
    against_account = 1.0 + moves.get(account, 0.0) if account != HUB else 1.0
    out = {}
    for ccy, value in exposure.items():
        change = (1.0 + (moves.get(ccy, 0.0) if ccy != HUB else 0.0)) / against_account - 1.0
        if value and change:
            out[ccy] = value * change
    return out


def _var_cvar(pnl: np.ndarray, confidence: float) -> tuple[float, float]:
    """Historical VaR and CVaR as positive losses."""
    if pnl.size == 0:
        return 0.0, 0.0
    cutoff = float(np.quantile(pnl, 1.0 - confidence, method="lower"))
    tail = pnl[pnl <= cutoff]
    return max(0.0, -cutoff), max(0.0, -float(tail.mean())) if tail.size else 0.0


def compute(conn, secmaster, as_of: date | datetime | str | None = None, *, modes=("paper", "live"),
            run_ids: list[int] | None = None, lookback_days: int = 500, recent_days: int = 7,
            confidence=CONFIDENCE, account_currency: str | None = None) -> list[dict]:
    """The day's risk rows (not yet written): dicts with scope, kind, name, value, details.

    Money is in ``account_currency`` (default: the ``MBATS_ACCOUNT_CURRENCY`` setting).
    """
    if account_currency is None:
        from mbats.config import get_settings

        account_currency = get_settings().account_currency
    unit = account_currency = account_currency.upper()
    day = _as_of(as_of)
    end = _day_end(day)
    portfolio = open_positions(conn, day, modes, run_ids, recent_days)
    rows: list[dict] = []
    add = lambda scope, kind, name, value, **details: rows.append(  # noqa: E731
        {"scope": scope, "kind": kind, "name": name, "value": None if value is None else float(value),
         "details": details})

    # --- exposure by currency (in the account currency) ---------------------------------------
    rates: dict = {}
    net = portfolio.positions.groupby("instrument", as_index=False).agg(
        size=("size", "sum"), market_price=("market_price", "last"))
    exposure: dict[str, float] = {}
    unpriced: list[str] = []
    instrument_usd: dict[str, float] = {}  # account-currency value of one unit of relative move per instrument
    for row in net.itertuples():
        base, _, quote = row.instrument.partition("_")
        price = float(row.market_price) if row.market_price is not None and not math.isnan(row.market_price) else None
        if price is None:
            closes = _daily_closes(secmaster, row.instrument, end, 5)
            price = float(closes.iloc[-1]) if len(closes) else None
        quote_usd = account_rate(secmaster, quote, end, rates, account_currency)
        if price is None or quote_usd is None:
            unpriced.append(row.instrument)
            continue
        notional_usd = float(row.size) * price * quote_usd
        exposure[base] = exposure.get(base, 0.0) + notional_usd
        exposure[quote] = exposure.get(quote, 0.0) - notional_usd
        instrument_usd[row.instrument] = notional_usd
    for ccy, value in sorted(exposure.items()):
        add("portfolio", "exposure", ccy, value, unit=unit)
    gross = sum(abs(v) for v in exposure.values()) / 2.0
    add("portfolio", "summary", "gross_exposure", gross, unit=unit, positions=len(net),
        runs=portfolio.run_ids, unpriced=unpriced)

    # --- historical VaR / CVaR of the positions ---------------------------------------------
    returns = {}
    for symbol in instrument_usd:
        closes = _daily_closes(secmaster, symbol, end, lookback_days)
        if len(closes) > 1:
            returns[symbol] = closes.pct_change().dropna()
    missing = sorted(set(instrument_usd) - set(returns))
    if returns:
        frame = pd.DataFrame(returns).sort_index().fillna(0.0)
        pnl = (frame * pd.Series(instrument_usd)[frame.columns]).sum(axis=1).to_numpy()
    else:
        frame, pnl = pd.DataFrame(), np.array([])
    scenarios = int(pnl.size)
    for level in confidence:
        var, cvar = _var_cvar(pnl, level)
        tag = f"{round(level * 100)}_1d"
        common = {"unit": unit, "scenarios": scenarios, "method": "historical simulation",
                  "reliable": scenarios >= MIN_SCENARIOS, "instruments_without_history": missing}
        add("portfolio", "var", f"var_{tag}", var, confidence=level, **common)
        add("portfolio", "cvar", f"cvar_{tag}", cvar, confidence=level, **common)

    # --- stress tests ----------------------------------------------------------------------
    for name, shock in HISTORICAL_SHOCKS.items():
        moves = shock["moves"]
        pnl_ccy = stress_pnl(exposure, moves, account_currency)
        add("portfolio", "stress", name, sum(pnl_ccy.values()), unit=unit, description=shock["description"],
            moves=moves, pnl_by_currency=pnl_ccy)
    if pnl.size:
        worst = int(np.argmin(pnl))
        add("portfolio", "stress", "worst_day_in_history", float(pnl[worst]), unit=unit,
            description="worst daily P&L of today's positions over the look-back",
            day=str(frame.index[worst].date()))

    # --- recent runs: VaR/CVaR of their own daily equity returns ----------------------------
    for run_id, equity in _recent_equity(conn, day, recent_days, run_ids).items():
        daily = fx_daily(equity).pct_change().dropna().to_numpy() * 100.0
        for level in confidence:
            var, cvar = _var_cvar(daily, level)
            tag = f"{round(level * 100)}_1d"
            common = {"unit": "% of equity", "scenarios": int(daily.size), "reliable": daily.size >= MIN_SCENARIOS}
            add(f"run:{run_id}", "var", f"var_{tag}", var, confidence=level, **common)
            add(f"run:{run_id}", "cvar", f"cvar_{tag}", cvar, confidence=level, **common)
    return rows


def _recent_equity(conn, day: date, recent_days: int, run_ids: list[int] | None) -> dict[int, pd.Series]:
    end = _day_end(day)
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT e.run_id, e.ts, e.value FROM equity e JOIN runs r ON r.id = e.run_id
             WHERE (%(ids)s::bigint[] IS NULL AND r.started_at >= %(since)s AND r.started_at < %(end)s
                    AND r.status IN ('running', 'finished'))
                OR r.id = ANY(coalesce(%(ids)s::bigint[], '{}'))
             ORDER BY e.run_id, e.ts
            """,
            {"ids": run_ids, "since": end - timedelta(days=recent_days), "end": end},
        )
        rows = cur.fetchall()
    if not rows:
        return {}
    frame = pd.DataFrame(rows, columns=["run_id", "ts", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return {int(k): g.set_index("ts")["value"].astype(float) for k, g in frame.groupby("run_id")}


def write(conn, as_of: date, rows: list[dict]) -> int:
    """Replace all of the day's rows with ``rows``; return how many were written."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM eod_risk WHERE as_of = %s", (as_of,))
        execute_values(cur, "INSERT INTO eod_risk (as_of, scope, kind, name, value, details) VALUES %s",
                       [(as_of, r["scope"], r["kind"], r["name"], r["value"], Json(r["details"], dumps=_dumps))
                        for r in rows])
    conn.commit()
    return len(rows)


def _dumps(value) -> str:
    import json

    return json.dumps(value, default=str, allow_nan=False)


def run_eod(as_of: date | datetime | str | None = None, **kwargs) -> dict:
    """Compute and store the end-of-day risk for ``as_of`` (default: today, UTC); a summary."""
    from mbats.db import connect

    day = _as_of(as_of)
    conn, secmaster = connect("risk"), connect("secmaster")
    try:
        rows = compute(conn, secmaster, day, **kwargs)
        written = write(conn, day, rows)
    finally:
        conn.close()
        secmaster.close()
    pick = {(r["scope"], r["name"]): r["value"] for r in rows if r["scope"] == "portfolio"}
    return {
        "as_of": day.isoformat(),
        "rows": written,
        "var_95_1d": pick.get(("portfolio", "var_95_1d")),
        "cvar_95_1d": pick.get(("portfolio", "cvar_95_1d")),
        "gross_exposure": pick.get(("portfolio", "gross_exposure")),
        "exposure": {r["name"]: r["value"] for r in rows if r["kind"] == "exposure"},
        "worst_stress": min(((r["name"], r["value"]) for r in rows if r["kind"] == "stress"),
                            key=lambda kv: kv[1], default=None),
        "runs": sorted({r["scope"] for r in rows if r["scope"].startswith("run:")}),
    }
