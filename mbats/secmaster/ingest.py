"""Loading bar files into the security master: validate everything, then write in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mbats.errors import DataValidationError
from mbats.secmaster.bars import BarWriteResult, write_bars
from mbats.secmaster.granularity import check_granularity
from mbats.secmaster.loads import Provenance, finish_load, start_load
from mbats.secmaster.instruments import Instrument, upsert_instruments
from mbats.secmaster.validate import read_bar_file, validate_bars


@dataclass(frozen=True)
class LoadResult:
    source: str
    symbol: str
    granularity: str
    rows: int
    written: BarWriteResult
    first: pd.Timestamp
    last: pd.Timestamp


def load_frames(conn, instrument: Instrument, granularity: str, frames: list[tuple[str, pd.DataFrame]],
                assume_timezone: str | None = None, time_unit: str | None = None,
                kind: str = "file") -> list[LoadResult]:
    """Validate every frame first; only then upsert the instrument and all bars and commit once.

    A rule broken anywhere raises before anything is written, so a load is all or nothing.
    """
    check_granularity(granularity)
    validated = [(source, validate_bars(frame, source, assume_timezone, time_unit=time_unit,
                                        symbol=instrument.symbol)) for source, frame in frames]
    for source, bars in validated:
        check_against_stored(conn, instrument.symbol, bars, source)
    try:
        instrument_id = upsert_instruments(conn, [instrument])[instrument.symbol]
        results = []
        for source, bars in validated:
            load_id = start_load(conn, instrument_id, granularity,
                                 Provenance(kind, instrument.vendor, source, instrument.is_synthetic))
            written = write_bars(conn, instrument_id, granularity, bars, load_id)
            finish_load(conn, load_id, written.inserted + written.updated, bars["ts"].iloc[0], bars["ts"].iloc[-1])
            results.append(LoadResult(source, instrument.symbol, granularity, len(bars), written,
                                      bars["ts"].iloc[0], bars["ts"].iloc[-1]))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return results


def import_files(conn, paths: list[Path], symbol: str, granularity: str, vendor: str = "file",
                 assume_timezone: str | None = None, time_unit: str | None = None,
                kind: str = "file") -> list[LoadResult]:
    """`mbats data import`: CSV/Parquet files of one instrument and granularity."""
    instrument = Instrument.fx(symbol, vendor=vendor, source=", ".join(Path(p).name for p in paths))
    frames = [(str(p), read_bar_file(Path(p))) for p in paths]
    return load_frames(conn, instrument, granularity, frames, assume_timezone, time_unit)


SCALE_FACTOR = 3.0  # new bars whose median is 3x (or 1/3 of) the stored bars' are a different scale


def check_against_stored(conn, symbol: str, bars: pd.DataFrame, source: str) -> None:
    """New bars must be on the scale of the instrument's stored bars nearest in time (any granularity)."""
    first = bars["ts"].iloc[0].to_pydatetime()
    with conn.cursor() as cur:
        cur.execute(
            """
            (SELECT b.close, b.ts FROM bars b JOIN instruments i ON i.id = b.instrument_id
              WHERE i.symbol = %(s)s AND b.ts <= %(t)s ORDER BY b.ts DESC LIMIT 1)
            UNION ALL
            (SELECT b.close, b.ts FROM bars b JOIN instruments i ON i.id = b.instrument_id
              WHERE i.symbol = %(s)s AND b.ts > %(t)s ORDER BY b.ts LIMIT 1)
            """, {"s": symbol.upper(), "t": first})
        stored = cur.fetchall()
    if not stored:
        return
    reference, when = stored[0]
    median = float(bars["close"].median())
    if not 1 / SCALE_FACTOR <= median / reference <= SCALE_FACTOR:
        raise DataValidationError(
            f"{source}: prices around {median:g} but the stored {symbol.upper()} bars are around {reference:g} "
            f"(at {when:%Y-%m-%d %H:%M}); wrong instrument or price scale? nothing was loaded")
