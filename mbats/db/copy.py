"""PostgreSQL binary COPY for fixed-width columns, built and parsed with numpy in one step.

Every column here is NOT NULL and fixed width (int4, int8, float8, timestamptz, or a text value
that is the same for every row, such as a granularity code), so each row of
the binary format has the same layout: a 16-bit field count, then per field a 32-bit length and
the big-endian value. A numpy structured dtype describes that row, which turns whole columns
into COPY bytes (and back) without a Python loop.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds: binary timestamptz origin
HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
_WIRE = {"int4": ">i4", "int8": ">i8", "float8": ">f8", "timestamptz": ">i8"}


def row_dtype(fields: Sequence[tuple[str, str]], text_widths: Mapping[str, int] | None = None) -> np.dtype:
    layout: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, pgtype in fields:
        wire = f"S{text_widths[name]}" if pgtype == "text" else _WIRE[pgtype]
        layout += [(f"len_{name}", ">i4"), (name, wire)]
    return np.dtype(layout)


def _timestamps_us(values) -> np.ndarray:
    if isinstance(values, (pd.Series, pd.Index)):
        values = pd.DatetimeIndex(values)
        if values.tz is not None:
            values = values.tz_convert("UTC").tz_localize(None)
        return values.as_unit("us").asi8
    return np.asarray(values, dtype="datetime64[us]").astype("int64")


def encode(fields: Sequence[tuple[str, str]], columns: Mapping[str, object], nrows: int) -> bytes:
    """COPY ... FROM STDIN (FORMAT binary) payload for the given columns."""
    # a text column holds one value for all rows (bytes of a fixed width)
    texts = {name: str(columns[name]).encode() for name, pgtype in fields if pgtype == "text"}
    dtype = row_dtype(fields, {name: len(value) for name, value in texts.items()})
    rows = np.empty(nrows, dtype=dtype)
    rows["nfields"] = len(fields)
    for name, pgtype in fields:
        values = columns[name]
        if pgtype == "text":
            rows[f"len_{name}"] = len(texts[name])
            rows[name] = texts[name]
            continue
        rows[f"len_{name}"] = np.dtype(_WIRE[pgtype]).itemsize
        rows[name] = _timestamps_us(values) - PG_EPOCH_US if pgtype == "timestamptz" else np.asarray(values)
    return HEADER + rows.tobytes() + TRAILER


def copy_in(cur, table: str, fields: Sequence[tuple[str, str]], columns: Mapping[str, object], nrows: int) -> None:
    names = ", ".join(name for name, _ in fields)
    cur.copy_expert(f"COPY {table} ({names}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(encode(fields, columns, nrows)))


def copy_out(cur, query: str, fields: Sequence[tuple[str, str]]) -> np.ndarray:
    """Run ``query`` through COPY TO STDOUT (binary) and return its rows as a structured array.

    Timestamp fields come back as Unix microseconds (int64).
    """
    buf = io.BytesIO()
    cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buf)
    raw = buf.getbuffer()
    dtype = row_dtype(fields)
    count = (len(raw) - len(HEADER) - len(TRAILER)) // dtype.itemsize
    rows = np.frombuffer(raw, dtype=dtype, count=count, offset=len(HEADER))
    out = np.empty(count, dtype=[(n, "<i8" if t in ("timestamptz", "int8") else "<i4" if t == "int4" else "<f8") for n, t in fields])
    for name, pgtype in fields:
        out[name] = rows[name] + PG_EPOCH_US if pgtype == "timestamptz" else rows[name]
    return out


def utc_index(unix_us: np.ndarray, name: str = "ts") -> pd.DatetimeIndex:
    return pd.DatetimeIndex(unix_us.view("datetime64[us]"), name=name).tz_localize("UTC")
