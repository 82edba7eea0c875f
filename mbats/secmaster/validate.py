"""Rules every bar must pass before it reaches the security master.

Checks are vectorised; the first broken rule raises :class:`DataValidationError` naming the
file, the 1-based data row and the rule, so nothing of the load is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mbats.errors import DataValidationError

PRICE_COLUMNS = ["open", "high", "low", "close"]
TIME_ALIASES = ("ts", "time", "timestamp", "datetime", "date")


def read_bar_file(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file of bars as it is (validation happens in :func:`validate_bars`)."""
    if not path.exists():
        raise DataValidationError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path)
    except Exception as exc:  # a parser error is bad input, not a crash
        raise DataValidationError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from None
    raise DataValidationError(f"{path}: unsupported file type '{suffix}'; use .csv or .parquet")


def _time_column(df: pd.DataFrame, source: str) -> str:
    lower = {str(c).strip().lower(): c for c in df.columns}
    for alias in TIME_ALIASES:
        if alias in lower:
            return lower[alias]
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed") or str(c).strip() == ""]
    if unnamed:
        return unnamed[0]
    raise DataValidationError(
        f"{source}: wrong columns {list(map(str, df.columns))}; expected a time column "
        f"({'/'.join(TIME_ALIASES)}) and open, high, low, close[, volume]"
    )


def _parse_times(column: pd.Series, source: str, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        return column
    try:  # ISO 8601 is what files hold; the strict parser is ~10x faster than format="mixed"
        return pd.to_datetime(column, format="ISO8601")
    except (ValueError, TypeError):
        pass
    try:
        return pd.to_datetime(column, format="mixed")
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"{source}: time column '{name}' cannot be parsed ({exc})") from None


def _fail(source: str, mask: np.ndarray, rule: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
        raise DataValidationError(f"{source}: row {bad[0] + 1}: {rule}{more}")


def validate_bars(raw: pd.DataFrame, source: str, assume_timezone: str | None = None) -> pd.DataFrame:
    """Return bars as columns ts (UTC), open, high, low, close, volume — or raise naming the rule."""
    if isinstance(raw.index, pd.DatetimeIndex):
        raw = raw.reset_index()
    lower = {str(c).strip().lower(): c for c in raw.columns}
    missing = [c for c in PRICE_COLUMNS if c not in lower]
    time_col = _time_column(raw, source)
    if missing:
        raise DataValidationError(
            f"{source}: wrong columns {list(map(str, raw.columns))}; missing {', '.join(missing)} "
            "(expected time, open, high, low, close[, volume])"
        )
    if len(raw) == 0:
        raise DataValidationError(f"{source}: no rows")

    ts = _parse_times(raw[time_col], source, time_col)
    _fail(source, ts.isna().to_numpy(), "missing timestamp")
    if ts.dt.tz is None:
        if assume_timezone is None:
            raise DataValidationError(
                f"{source}: row 1: timestamps have no timezone (naive); add an offset such as +00:00 "
                "or pass --timezone UTC to say which zone they are in"
            )
        ts = ts.dt.tz_localize(assume_timezone)
    ts = ts.dt.tz_convert("UTC").dt.as_unit("us")

    out = pd.DataFrame({"ts": ts.reset_index(drop=True)})
    for col in PRICE_COLUMNS:
        values = pd.to_numeric(raw[lower[col]], errors="coerce").to_numpy(dtype="float64")
        _fail(source, ~np.isfinite(values), f"{col} is missing, NaN or not a number")
        _fail(source, values <= 0, f"{col} must be positive")
        out[col] = values
    if "volume" in lower:
        vol = pd.to_numeric(raw[lower["volume"]], errors="coerce").to_numpy(dtype="float64")
        _fail(source, np.isnan(vol), "volume is not a number")
        _fail(source, vol < 0, "volume is negative")
        out["volume"] = vol.astype("int64")
    else:
        out["volume"] = np.zeros(len(out), dtype="int64")

    o, h, l, c = (out[k].to_numpy() for k in PRICE_COLUMNS)
    _fail(source, h < l, "high is below low")
    _fail(source, (o < l) | (o > h), "open is outside [low, high]")
    _fail(source, (c < l) | (c > h), "close is outside [low, high]")

    t = pd.DatetimeIndex(out["ts"]).asi8  # int64: comparing tz-aware objects row by row is slow
    _fail(source, np.concatenate([[False], t[1:] == t[:-1]]), "duplicate timestamp")
    _fail(source, np.concatenate([[False], t[1:] < t[:-1]]), "timestamps are not sorted ascending")
    return out
