"""OANDA candles: one request (:func:`fetch_candles`) and its payload → validated bar frames.

Mid prices always, bid/ask when asked for. Downloads and live backfills both fetch through here.

Every field is checked before anything is written: a payload with a missing, non-numeric or
inconsistent candle raises :class:`DataValidationError` naming the candle, so the page it came
in is never partly stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from oandapyV20.endpoints.instruments import InstrumentsCandles

from mbats.errors import DataValidationError
from mbats.secmaster.validate import validate_bars
from mbats.venues.oanda.client import OandaClient

PRICE_KEYS = {"M": "mid", "B": "bid", "A": "ask"}
OHLC = (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"))


@dataclass
class CandlePage:
    """One response: complete candles only, oldest first."""

    mid: pd.DataFrame  # ts, open, high, low, close, volume (validated)
    sides: dict[str, pd.DataFrame]  # "bid"/"ask" → ts, open, high, low, close (validated)
    returned: int  # candles in the response, complete or not
    had_incomplete: bool
    last_returned: pd.Timestamp | None  # time of the newest candle in the response

    @property
    def empty(self) -> bool:
        return self.mid.empty


def check_price(price: str) -> str:
    price = price.upper()
    if not price or any(p not in PRICE_KEYS for p in price) or len(set(price)) != len(price):
        raise DataValidationError(f"price '{price}' must be made of M, B and A (e.g. M or MBA)")
    return price if "M" in price else "M" + price  # mid always: the bars table holds mid prices


def _column(candles: list, key: str, field: str, source: str) -> list:
    try:
        return [c[key][field] for c in candles]
    except (KeyError, TypeError):
        for i, c in enumerate(candles):
            if not isinstance(c, dict) or not isinstance(c.get(key), dict) or field not in c[key]:
                raise DataValidationError(f"{source}: candle {i + 1}: missing {key}.{field}") from None
        raise


def _numbers(values: list, what: str, source: str) -> np.ndarray:
    out = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(dtype="float64")
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise DataValidationError(f"{source}: candle {bad[0] + 1}: {what} is not a number ({values[bad[0]]!r})")
    return out


def parse_candles(payload: object, source: str, price: str = "M") -> CandlePage:
    """Parse and validate a ``GET /v3/instruments/{i}/candles`` response."""
    if not isinstance(payload, dict) or not isinstance(payload.get("candles"), list):
        raise DataValidationError(f"{source}: response has no 'candles' list")
    candles = payload["candles"]
    if not candles:
        empty = pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"])
        return CandlePage(empty, {}, 0, False, None)
    for i, c in enumerate(candles):
        if not isinstance(c, dict) or not isinstance(c.get("time"), str) or not isinstance(c.get("complete"), bool):
            raise DataValidationError(f"{source}: candle {i + 1}: missing or bad 'time' / 'complete'")
    try:
        times = pd.to_datetime(pd.Series([c["time"] for c in candles]), format="ISO8601", utc=True)
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"{source}: candle times cannot be parsed ({exc})") from None
    complete = np.fromiter((c["complete"] for c in candles), dtype=bool, count=len(candles))
    volume = _numbers([c.get("volume") for c in candles], "volume", source)

    def side_frame(key: str) -> pd.DataFrame:
        frame = pd.DataFrame({"ts": times})
        for short, name in OHLC:
            frame[name] = _numbers(_column(candles, key, short, source), f"{key}.{short}", source)
        frame["volume"] = volume
        frame = frame[complete]
        if frame.empty:
            return frame
        return validate_bars(frame.reset_index(drop=True), f"{source} ({key})")

    frames = {PRICE_KEYS[p]: side_frame(PRICE_KEYS[p]) for p in check_price(price)}
    mid = frames.pop("mid")
    sides = {k: v.drop(columns="volume") for k, v in frames.items()}
    return CandlePage(mid, sides, len(candles), bool((~complete).any()), times.iloc[-1])


def fetch_candles(client: OandaClient, instrument: str, granularity: str, price: str = "M",
                  source: str | None = None, **params) -> CandlePage:
    """One ``GET /v3/instruments/{instrument}/candles`` request (``count``/``from``/… in ``params``), validated."""
    params = {"granularity": granularity, "price": price, **params}
    payload = client.request(InstrumentsCandles(instrument, params=params))
    return parse_candles(payload, source or f"{instrument} {granularity} candles", price)
