"""Financing (rollover) and margin terms per instrument, and OANDA's daily rollover rule.

OANDA charges or pays financing on every position held over 17:00 New York: the position's value
in the quote currency (|units| x mid price) times the instrument's annual long or short rate
(decimal, negative = the holder pays) times the days charged that weekday over 365. Spot FX settles
two days later, so the Wednesday rollover carries the weekend and counts three days; Saturday and
Sunday charge nothing (OANDA's ``financingDaysOfWeek``). The amount is converted into the account
currency at the rate of that moment.

Terms live in the security master's ``instrument_financing`` table (one row per instrument and
``effective_from``), loaded from a CSV file (``mbats data financing load``) or from an OANDA / the
simulator's account instruments (``marginRate`` and ``financing``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mbats.errors import DataValidationError, NotFoundError

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
DEFAULT_DAYS_CHARGED = (1, 1, 3, 1, 1, 0, 0)  # Monday … Sunday: Wednesday carries the weekend
DAY_BASIS = 365  # OANDA divides annual rates by 365 for currencies
ROLLOVER_HOUR = 17  # New York
NEW_YORK = "America/New_York"
ALWAYS = pd.Timestamp("1970-01-01", tz="UTC")  # terms with no stated start apply to all history


@dataclass(frozen=True)
class FinancingTerms:
    """One instrument's annual long/short financing rates and margin rate, from ``effective_from``."""

    symbol: str
    long_rate: float
    short_rate: float
    margin_rate: float
    days_charged: tuple[int, ...] = DEFAULT_DAYS_CHARGED
    effective_from: pd.Timestamp = ALWAYS
    source: str = "file"

    def rate_for(self, units: float) -> float:
        return self.long_rate if units > 0 else self.short_rate

    def days_on(self, weekday: int) -> int:
        """Days charged by the rollover at 17:00 New York on ``weekday`` (0 = Monday)."""
        return self.days_charged[weekday]

    def charge(self, units: float, price: float, weekday: int) -> float:
        """Financing in the quote currency for ``units`` held over one rollover (signed: < 0 paid)."""
        return abs(units) * price * self.rate_for(units) * self.days_on(weekday) / DAY_BASIS

    def to_oanda(self) -> dict:
        """The ``marginRate`` and ``financing`` fields of an OANDA v20 Instrument."""
        return {"marginRate": f"{self.margin_rate:g}",
                "financing": {"longRate": f"{self.long_rate:.4f}", "shortRate": f"{self.short_rate:.4f}",
                              "financingDaysOfWeek": [{"dayOfWeek": d, "daysCharged": n}
                                                      for d, n in zip(WEEKDAYS, self.days_charged)]}}

    @classmethod
    def from_oanda(cls, item: dict, source: str) -> "FinancingTerms | None":
        """From an OANDA v20 Instrument entry; None when it carries no financing data."""
        fin = item.get("financing")
        if not isinstance(fin, dict) or "longRate" not in fin or "shortRate" not in fin:
            return None
        days = dict(zip(WEEKDAYS, DEFAULT_DAYS_CHARGED))
        for entry in fin.get("financingDaysOfWeek") or []:
            days[str(entry["dayOfWeek"]).upper()] = int(entry["daysCharged"])
        terms = cls(symbol=str(item["name"]).upper(), long_rate=float(fin["longRate"]),
                    short_rate=float(fin["shortRate"]), margin_rate=float(item.get("marginRate", 0.02)),
                    days_charged=tuple(days[d] for d in WEEKDAYS), source=source)
        problem = terms.problem()
        if problem:
            raise DataValidationError(f"{source}: {terms.symbol}: {problem}")
        return terms

    def problem(self) -> str | None:
        """What is wrong with these terms (None if they are usable)."""
        for name in ("long_rate", "short_rate"):
            value = getattr(self, name)
            if not math.isfinite(value) or abs(value) >= 1:
                return f"{name} {value!r} must be an annual decimal rate between -1 and 1 (e.g. -0.0425)"
        if not math.isfinite(self.margin_rate) or not 0 < self.margin_rate <= 1:
            return f"margin_rate {self.margin_rate!r} must be above 0 and at most 1 (e.g. 0.0333 for 30:1)"
        if len(self.days_charged) != 7 or any(d < 0 or d > 7 for d in self.days_charged):
            return f"days_charged {self.days_charged!r} must be 7 day counts, Monday to Sunday"
        return None


# Illustrative terms for the simulator and the samples (rates of late 2024 in spirit, not OANDA's
# published figures): the simulator offers these unless given others.
SIMULATOR_TERMS = {  # long rate, short rate (annual, decimal); margin is the account's (50:1 unless set)
    "EUR_USD": (-0.0402, 0.0105),
    "GBP_USD": (-0.0310, 0.0028),
    "AUD_USD": (-0.0367, 0.0071),
    "NZD_USD": (-0.0346, 0.0052),
    "USD_JPY": (0.0381, -0.0695),
    "USD_CHF": (0.0258, -0.0579),
    "USD_CAD": (0.0033, -0.0352),
    "EUR_GBP": (-0.0279, -0.0025),
    "EUR_JPY": (0.0105, -0.0402),
}


def simulator_terms(symbols, default_margin_rate: float = 0.02) -> dict[str, FinancingTerms]:
    """Terms for the simulator's instruments: the table above, else zero rates at the default margin."""
    out = {}
    for symbol in symbols:
        long_rate, short_rate = SIMULATOR_TERMS.get(symbol.upper(), (0.0, 0.0))
        out[symbol.upper()] = FinancingTerms(symbol.upper(), long_rate, short_rate, default_margin_rate,
                                             source="mbats-simulator")
    return out


@dataclass
class Schedule:
    """Every instrument's terms over time: the row in force at a moment is the latest started by then."""

    terms: dict[str, list[FinancingTerms]] = field(default_factory=dict)

    def at(self, symbol: str, when: pd.Timestamp) -> FinancingTerms | None:
        """The row in force at ``when``; before the first row, the first row (OANDA publishes only
        today's rates, so history before the first download is financed at the earliest rates known)."""
        rows = self.terms.get(symbol.upper(), [])
        current = rows[0] if rows else None
        for row in rows:  # sorted by effective_from
            if row.effective_from <= when:
                current = row
        return current

    def missing(self, symbols) -> list[str]:
        return [s for s in symbols if not self.terms.get(s.upper())]

    @classmethod
    def of(cls, terms) -> "Schedule":
        out: dict[str, list[FinancingTerms]] = {}
        for t in terms:
            out.setdefault(t.symbol, []).append(t)
        return cls({s: sorted(rows, key=lambda r: r.effective_from) for s, rows in out.items()})


def rollovers(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The 17:00 New York instants in ``(start, end]``: columns ts (UTC) and weekday (0 = Monday)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    if end <= start:
        return pd.DataFrame({"ts": pd.DatetimeIndex([], tz="UTC"), "weekday": []})
    first = start.tz_convert(NEW_YORK).normalize() - pd.Timedelta(days=1)
    days = pd.date_range(first.tz_localize(None), end.tz_convert(NEW_YORK).tz_localize(None).normalize(), freq="D")
    local = (days + pd.Timedelta(hours=ROLLOVER_HOUR)).tz_localize(NEW_YORK, ambiguous=False,
                                                                  nonexistent="shift_forward")
    utc = local.tz_convert("UTC")
    keep = (utc > start) & (utc <= end)
    return pd.DataFrame({"ts": utc[keep], "weekday": days.weekday[keep]})


# --- storage ------------------------------------------------------------------------------------
_COLUMNS = ("instrument", "long_rate", "short_rate", "margin_rate")


def read_terms_file(path: Path) -> list[FinancingTerms]:
    """A CSV of ``instrument,long_rate,short_rate,margin_rate[,effective_from][,days_charged]``.

    ``days_charged`` is seven numbers Monday … Sunday (``1 1 3 1 1 0 0`` when absent); rows must be
    complete and in range, or nothing is loaded.
    """
    try:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except FileNotFoundError:
        raise DataValidationError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: not a readable CSV ({exc})") from None
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)}; "
                                  f"expected {','.join(_COLUMNS)}[,effective_from][,days_charged]")
    if frame.empty:
        raise DataValidationError(f"{path}: no rows")
    out, seen = [], set()
    for i, row in enumerate(frame.to_dict("records"), start=2):  # line numbers as an editor shows them
        where = f"{path}: line {i}"
        symbol = str(row["instrument"] or "").strip().upper()
        from mbats.secmaster.instruments import Instrument

        try:
            Instrument.fx(symbol, "file")
        except Exception:
            raise DataValidationError(f"{where}: instrument {row['instrument']!r} is not an FX pair like EUR_USD") from None
        try:
            numbers = [float(row[c]) for c in _COLUMNS[1:]]
        except (TypeError, ValueError):
            raise DataValidationError(f"{where}: long_rate, short_rate and margin_rate must be numbers") from None
        effective = ALWAYS
        if isinstance(row.get("effective_from"), str) and row["effective_from"].strip():
            try:
                effective = pd.Timestamp(row["effective_from"].strip())
            except ValueError:
                raise DataValidationError(f"{where}: effective_from {row['effective_from']!r} is not a date") from None
            effective = effective.tz_localize("UTC") if effective.tzinfo is None else effective.tz_convert("UTC")
        days = DEFAULT_DAYS_CHARGED
        if isinstance(row.get("days_charged"), str) and row["days_charged"].strip():
            try:
                days = tuple(int(x) for x in row["days_charged"].replace(",", " ").split())
            except ValueError:
                raise DataValidationError(f"{where}: days_charged must be 7 whole numbers, Monday to Sunday") from None
        terms = FinancingTerms(symbol, *numbers, days_charged=days, effective_from=effective,
                               source=f"file:{Path(path).name}")
        problem = terms.problem()
        if problem:
            raise DataValidationError(f"{where}: {problem}")
        if (symbol, effective) in seen:
            raise DataValidationError(f"{where}: {symbol} from {effective:%Y-%m-%d} is listed twice")
        seen.add((symbol, effective))
        out.append(terms)
    return out


def store_terms(conn, terms: list[FinancingTerms], vendor: str = "file") -> int:
    """Upsert terms (by instrument and effective_from) in one transaction; unknown pairs are registered."""
    from mbats.secmaster.instruments import Instrument, upsert_instruments

    if not terms:
        return 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT symbol, id FROM instruments WHERE symbol = ANY(%s)", ([t.symbol for t in terms],))
            ids = dict(cur.fetchall())
        new = sorted({t.symbol for t in terms} - set(ids))
        if new:
            ids.update(upsert_instruments(conn, [Instrument.fx(s, vendor=vendor) for s in new]))
        with conn.cursor() as cur:
            for t in terms:
                cur.execute(
                    "INSERT INTO instrument_financing (instrument_id, effective_from, long_rate, short_rate, "
                    "margin_rate, days_charged, source) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (instrument_id, effective_from) DO UPDATE SET long_rate = EXCLUDED.long_rate, "
                    "short_rate = EXCLUDED.short_rate, margin_rate = EXCLUDED.margin_rate, "
                    "days_charged = EXCLUDED.days_charged, source = EXCLUDED.source, loaded_at = now()",
                    (ids[t.symbol], t.effective_from.to_pydatetime(), t.long_rate, t.short_rate, t.margin_rate,
                     list(t.days_charged), t.source))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return len(terms)


def read_schedule(conn, symbols) -> Schedule:
    """The stored terms of ``symbols`` (instruments with none stored are simply absent)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT i.symbol, f.long_rate, f.short_rate, f.margin_rate, f.days_charged, f.effective_from, f.source "
            "FROM instrument_financing f JOIN instruments i ON i.id = f.instrument_id "
            "WHERE i.symbol = ANY(%s) ORDER BY i.symbol, f.effective_from", ([s.upper() for s in symbols],))
        rows = cur.fetchall()
    return Schedule.of(FinancingTerms(symbol, lr, sr, mr, tuple(days), pd.Timestamp(eff).tz_convert("UTC"), src)
                       for symbol, lr, sr, mr, days, eff, src in rows)


def list_terms(conn) -> list[dict]:
    """Every stored row, for ``mbats data financing list``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT i.symbol, f.effective_from, f.long_rate, f.short_rate, f.margin_rate, f.days_charged, f.source "
            "FROM instrument_financing f JOIN instruments i ON i.id = f.instrument_id ORDER BY 1, 2")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def require_terms(schedule: Schedule, symbols) -> None:
    missing = schedule.missing(symbols)
    if missing:
        raise NotFoundError(f"no financing/margin rates stored for {', '.join(missing)}; load them with "
                            "`mbats data financing load FILE` or `mbats data financing download`")
