"""Trade lists shared by every engine: the columns (:data:`TRADE_COLUMNS`) and the fingerprint.

The fingerprint is a SHA-256 of numeric columns in one fixed layout.

Backtrader runs, the vectorised simulator and the compiled sweep core all hash their trades
through :func:`fingerprint_arrays`, so equal fingerprints mean equal trade lists bit for bit
without formatting a single number as text. Layout ``mbats.trades.v1``::

    header  b"mbats.trades.v1;n=<rows>;instruments=<sorted unique names, comma separated>\\n"
    then each column as contiguous little-endian bytes, in this order (one value per trade,
    trades sorted by entry time, then instrument name — engines list simultaneous entries on
    several instruments in different orders, and that order is not part of the trades):
    instrument   int32    index of the trade's instrument in the sorted name list
    direction    int8     +1 long, -1 short
    size         float64  units (positive)
    entry_ts     int64    entry time, microseconds since 1970-01-01 UTC
    entry_price  float64
    exit_ts      int64    exit time in microseconds; INT64_MIN (NaT) while the trade is open
    exit_price   float64  NaN (one canonical bit pattern) while open
    pnl_net      float64  NaN while open

Floats are hashed by their bits: -0.0 differs from 0.0 and the last bit counts, as it must for
"identical trades".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

TRADE_COLUMNS = ["trade_ref", "instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts",
                 "exit_price", "pnl", "pnl_net", "commission", "return_pct", "mfe_pct", "mae_pct", "bars_held",
                 "is_open"]

LAYOUT = "mbats.trades.v1"
NAT = np.iinfo(np.int64).min


def _f64(values) -> np.ndarray:
    out = np.ascontiguousarray(values, dtype="<f8").copy()
    out[np.isnan(out)] = np.nan  # one NaN bit pattern whatever produced it
    return out


def fingerprint_arrays(instruments: Sequence[str], instrument_code: np.ndarray, direction: np.ndarray,
                       size: np.ndarray, entry_us: np.ndarray, entry_price: np.ndarray, exit_us: np.ndarray,
                       exit_price: np.ndarray, pnl_net: np.ndarray) -> str:
    """Hash one trade list given as columns; ``instruments`` are sorted, codes index into them."""
    n = len(direction)
    h = hashlib.sha256(f"{LAYOUT};n={n};instruments={','.join(instruments)}\n".encode())
    for column in (np.ascontiguousarray(instrument_code, dtype="<i4"), np.ascontiguousarray(direction, dtype="i1"),
                   _f64(size), np.ascontiguousarray(entry_us, dtype="<i8"), _f64(entry_price),
                   np.ascontiguousarray(exit_us, dtype="<i8"), _f64(exit_price), _f64(pnl_net)):
        if len(column) != n:
            raise ValueError("fingerprint columns must all have one value per trade")
        h.update(memoryview(column).cast("B"))
    return h.hexdigest()


def _micros(column: pd.Series) -> np.ndarray:
    stamps = pd.DatetimeIndex(pd.to_datetime(column, utc=True))
    return stamps.as_unit("us").asi8


def trades_fingerprint(trades: pd.DataFrame) -> str:
    """Fingerprint of a trade table with the backtest columns (TRADE_COLUMNS)."""
    if not len(trades):
        return fingerprint_arrays([], *(np.empty(0),) * 8)
    names = sorted(set(trades["instrument"].astype(str)))
    codes = pd.Categorical(trades["instrument"].astype(str), categories=names).codes
    direction = np.where(trades["direction"].to_numpy() == "long", 1, -1)
    is_open = trades["is_open"].to_numpy(dtype=bool)
    exit_us = np.where(is_open, NAT, _micros(trades["exit_ts"]))
    exit_price = np.where(is_open, np.nan, pd.to_numeric(trades["exit_price"]).to_numpy(dtype=np.float64))
    pnl_net = np.where(is_open, np.nan, pd.to_numeric(trades["pnl_net"]).to_numpy(dtype=np.float64))
    entry_us = _micros(trades["entry_ts"])
    order = np.lexsort((codes, entry_us))  # stable: same-bar trades of one instrument keep their order
    columns = (codes, direction, pd.to_numeric(trades["size"]).to_numpy(np.float64), entry_us,
               trades["entry_price"].to_numpy(np.float64), exit_us, exit_price, pnl_net)
    return fingerprint_arrays(names, *(np.asarray(c)[order] for c in columns))
