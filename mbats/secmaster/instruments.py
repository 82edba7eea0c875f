"""Instruments: one row per tradeable symbol (``EUR_USD`` style), upserted idempotently."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from psycopg2.extras import execute_values

from mbats.errors import MbatsError, NotFoundError


# Quote currencies whose pip is the second decimal (OANDA's pipLocation -2); every other pair's is the fourth.
TWO_DECIMAL_PIP_QUOTES = frozenset({"JPY", "HUF", "THB"})


def pip_size(symbol: str) -> float:
    """The pip of an FX pair from its symbol (``USD_JPY`` → 0.01): the one rule every engine uses."""
    return 0.01 if symbol.upper().rsplit("_", 1)[-1] in TWO_DECIMAL_PIP_QUOTES else 0.0001


@dataclass(frozen=True)
class Instrument:
    symbol: str
    base_currency: str
    quote_currency: str
    pip_size: float
    vendor: str
    source: str | None = None
    is_synthetic: bool = False
    display_name: str | None = None
    instrument_type: str = "CURRENCY"
    display_precision: int | None = None

    @classmethod
    def fx(cls, symbol: str, vendor: str, **extra) -> "Instrument":
        """An FX pair from its symbol: ``USD_JPY`` → base USD, quote JPY, pip 0.01."""
        parts = symbol.upper().split("_")
        if len(parts) != 2 or not all(len(p) == 3 and p.isalpha() for p in parts):
            raise MbatsError(f"'{symbol}' is not an FX symbol like EUR_USD")
        base, quote = parts
        pip = pip_size(symbol)
        extra.setdefault("display_name", f"{base}/{quote}")
        extra.setdefault("display_precision", 3 if pip == 0.01 else 5)
        return cls(symbol=f"{base}_{quote}", base_currency=base, quote_currency=quote, pip_size=pip,
                   vendor=vendor, **extra)


_COLUMNS = ("symbol", "base_currency", "quote_currency", "pip_size", "vendor", "source", "is_synthetic",
            "display_name", "instrument_type", "display_precision")


def upsert_instruments(conn, instruments: list[Instrument]) -> dict[str, int]:
    """Insert or update instruments by symbol (never duplicates); return {symbol: id}."""
    if not instruments:
        return {}
    rows = [tuple(asdict(i)[c] for c in _COLUMNS) for i in instruments]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])
    changed = " OR ".join(f"instruments.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in _COLUMNS[1:])
    with conn.cursor() as cur:
        execute_values(
            cur,
            f"INSERT INTO instruments ({', '.join(_COLUMNS)}) VALUES %s "
            f"ON CONFLICT (symbol) DO UPDATE SET {updates}, updated_at = now() WHERE {changed}",
            rows,
        )
        cur.execute("SELECT symbol, id FROM instruments WHERE symbol = ANY(%s)", ([i.symbol for i in instruments],))
        return dict(cur.fetchall())


def get_instrument_id(conn, symbol: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM instruments WHERE symbol = %s", (symbol,))
        row = cur.fetchone()
    if row is None:
        raise NotFoundError(
            f"unknown instrument '{symbol}'; add it with `mbats data import --instrument {symbol} …` "
            "or list known ones with `mbats data list`"
        )
    return row[0]
