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


EPOCH_UNITS = ("s", "ms", "us", "ns")
# Magnitude of an epoch timestamp between 1973 and 2286 in each unit (seconds ~1e8..1e10, ms ~1e11..1e13 …).
_EPOCH_MAGNITUDE = {"s": (1e8, 1e11), "ms": (1e11, 1e14), "us": (1e14, 1e17), "ns": (1e17, 1e20)}
_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)\s*$"


def plausible_window() -> tuple[pd.Timestamp, pd.Timestamp]:
    """Bars outside this window are a unit or typing mistake, not market data."""
    return pd.Timestamp("1971-01-01", tz="UTC"), pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)


def _epoch_unit(values: np.ndarray, source: str, name: str) -> str:
    """The unit of numeric epoch timestamps, read from their magnitude (all rows must agree)."""
    finite = np.abs(values[np.isfinite(values)])
    for unit, (low, high) in _EPOCH_MAGNITUDE.items():
        if finite.size and ((finite >= low) & (finite < high)).all():
            return unit
    raise DataValidationError(
        f"{source}: time column '{name}' holds numbers ({finite.min() if finite.size else 'none'} … "
        f"{finite.max() if finite.size else 'none'}) whose unit cannot be told from their size; "
        "pass --time-unit s, ms, us or ns (seconds, milliseconds, … since 1970-01-01 UTC)"
    )


def _parse_times(column: pd.Series, source: str, name: str, time_unit: str | None = None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        return column
    if time_unit is not None or pd.api.types.is_numeric_dtype(column):
        # Numbers are epoch times; pandas would read them as nanoseconds and put hourly bars in 1970.
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.isna().any():
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0]) + 1
            raise DataValidationError(f"{source}: row {row}: time '{column.iloc[row - 1]}' is not a number, "
                                      f"but --time-unit {time_unit} says times are epoch numbers")
        unit = time_unit or _epoch_unit(numbers.to_numpy(dtype="float64"), source, name)
        try:
            return pd.to_datetime(numbers, unit=unit, utc=True)
        except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
            raise DataValidationError(f"{source}: time column '{name}': numbers too large for unit "
                                      f"'{unit}' (epoch {unit} since 1970)") from None
    try:  # ISO 8601 is what files hold; the strict parser is ~10x faster than format="mixed"
        return pd.to_datetime(column, format="ISO8601")
    except (ValueError, TypeError) as exc:
        if "Mixed timezones" in str(exc):
            return _mixed_offsets(column, source)
    try:
        return pd.to_datetime(column, format="mixed")
    except (ValueError, TypeError) as exc:
        if "Mixed timezones" in str(exc):
            return _mixed_offsets(column, source)
        first = str(exc).split(", at position")[0].split("\n")[0]
        raise DataValidationError(f"{source}: time column '{name}' cannot be read as dates ({first}); "
                                  "use ISO 8601 such as 2024-01-31T12:00:00Z") from None


def _mixed_offsets(column: pd.Series, source: str) -> pd.Series:
    """Rows with different UTC offsets (e.g. across a daylight-saving change) are fine if every row has one."""
    has_offset = column.astype(str).str.contains(_OFFSET, regex=True).to_numpy()
    if not has_offset.all():
        row = int(np.flatnonzero(~has_offset)[0]) + 1
        raise DataValidationError(
            f"{source}: row {row}: time '{column.iloc[row - 1]}' has no UTC offset while other rows do; "
            "give every row an offset (e.g. +01:00 or Z) or none (then pass --timezone)")
    try:
        return pd.to_datetime(column, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        return pd.to_datetime(column, format="mixed", utc=True)


def _fail(source: str, mask: np.ndarray, rule: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
        raise DataValidationError(f"{source}: row {bad[0] + 1}: {rule}{more}")


# Broad ranges a quote has never left (decades of history, with room): a price outside is a wrong
# instrument, a wrong scale (pips, points) or a typo. Other pairs get the generic range.
KNOWN_RANGES = {
    "EUR_USD": (0.5, 2.5), "GBP_USD": (0.8, 3.0), "AUD_USD": (0.3, 1.6), "NZD_USD": (0.3, 1.3),
    "USD_CHF": (0.5, 2.5), "USD_CAD": (0.7, 2.0), "USD_JPY": (50.0, 400.0), "EUR_GBP": (0.4, 1.3),
    "EUR_JPY": (60.0, 300.0), "GBP_JPY": (90.0, 400.0), "EUR_CHF": (0.7, 2.0), "XAU_USD": (100.0, 20_000.0),
}
GENERIC_RANGE = (1e-5, 1e6)
NEIGHBOUR_FACTOR = 3.0  # a bar's price more than 3x (or under 1/3) its neighbours' median is not a market move
NEIGHBOUR_WINDOW = 21


def _check_price_scale(out: pd.DataFrame, source: str, symbol: str | None) -> None:
    low, high = KNOWN_RANGES.get((symbol or "").upper(), GENERIC_RANGE)
    name = f"{symbol.upper()} " if symbol and symbol.upper() in KNOWN_RANGES else ""
    for col in PRICE_COLUMNS:
        values = out[col].to_numpy()
        _fail(source, (values < low) | (values > high),
              f"{col} {_first_bad(values, (values < low) | (values > high))} is outside the plausible {name}price "
              f"range {low:g} to {high:g}; wrong instrument or price scale?")
    close = out["close"]
    neighbours = close.rolling(NEIGHBOUR_WINDOW, center=True, min_periods=1).median().to_numpy()
    for col in PRICE_COLUMNS:
        ratio = out[col].to_numpy() / neighbours
        bad = (ratio > NEIGHBOUR_FACTOR) | (ratio < 1 / NEIGHBOUR_FACTOR)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _fail(source, bad, f"{col} {out[col].iloc[i]:g} is far from the neighbouring bars (around "
                  f"{neighbours[i]:g}); a misplaced decimal point?")


def _first_bad(values: np.ndarray, mask: np.ndarray) -> str:
    return f"{values[np.flatnonzero(mask)[0]]:g}" if mask.any() else ""


def validate_bars(raw: pd.DataFrame, source: str, assume_timezone: str | None = None, *,
                  time_unit: str | None = None, symbol: str | None = None) -> pd.DataFrame:
    """Return bars as columns ts (UTC), open, high, low, close, volume — or raise naming the rule.

    ``time_unit`` (s, ms, us, ns) reads a numeric time column as epoch times (detected from the
    magnitude when not given); ``symbol`` enables the instrument's known price scale.
    """
    if time_unit is not None and time_unit not in EPOCH_UNITS:
        raise DataValidationError(f"--time-unit '{time_unit}' is not one of {', '.join(EPOCH_UNITS)}")
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

    ts = _parse_times(raw[time_col], source, time_col, time_unit)
    _fail(source, ts.isna().to_numpy(), "missing timestamp")
    if ts.dt.tz is None:
        if assume_timezone is None:
            raise DataValidationError(
                f"{source}: row 1: timestamps have no timezone (naive); add an offset such as +00:00 "
                "or pass --timezone UTC to say which zone they are in"
            )
        try:
            ts = ts.dt.tz_localize(assume_timezone, ambiguous="raise", nonexistent="raise")
        except Exception as exc:  # unknown zone, or a wall-clock time that DST skips or repeats
            raise DataValidationError(f"{source}: --timezone {assume_timezone}: {str(exc).splitlines()[0]}; "
                                      "store times with a UTC offset to be unambiguous") from None
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
    _check_price_scale(out, source, symbol)

    earliest, latest = plausible_window()
    _fail(source, (out["ts"] < earliest).to_numpy(),
          f"time before {earliest:%Y-%m-%d} ({out['ts'].min():%Y-%m-%d %H:%M}); numeric epoch times need --time-unit")
    _fail(source, (out["ts"] > latest).to_numpy(),
          f"time in the future ({out['ts'].max():%Y-%m-%d %H:%M}, now is {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC)")

    t = pd.DatetimeIndex(out["ts"]).asi8  # int64: comparing tz-aware objects row by row is slow
    _fail(source, np.concatenate([[False], t[1:] == t[:-1]]), "duplicate timestamp")
    _fail(source, np.concatenate([[False], t[1:] < t[:-1]]), "timestamps are not sorted ascending")
    return out
