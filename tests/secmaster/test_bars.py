"""Security-master I/O against the real PostgreSQL: idempotent COPY upserts and exact reads."""

import numpy as np
import pandas as pd
import pytest

from mbats.errors import DataValidationError, NotFoundError
from mbats.secmaster import Instrument, read_bars
from mbats.secmaster.bars import coverage
from mbats.secmaster.ingest import import_files, load_frames


def bars_frame(start: str, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    o = 1.2 + rng.normal(0, 1e-3, n)
    c = o + rng.normal(0, 2e-4, n)
    # distinct values per field so a scrambled column order would show
    return pd.DataFrame({"ts": ts, "open": o, "high": np.maximum(o, c) + 3e-4, "low": np.minimum(o, c) - 5e-4,
                         "close": c, "volume": rng.integers(1, 100, n)})


def count_rows(conn, symbol: str, granularity: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bars b JOIN instruments i ON i.id = b.instrument_id "
                    "WHERE i.symbol = %s AND b.granularity = %s", (symbol, granularity))
        return cur.fetchone()[0]


def test_roundtrip_keeps_every_field_in_place(secmaster_conn):
    frame = bars_frame("2024-03-01", 2_000)
    [result] = load_frames(secmaster_conn, Instrument.fx("EUR_CHF", vendor="test"), "M1", [("mem", frame)])
    assert (result.written.inserted, result.written.updated) == (2_000, 0)
    back = read_bars(secmaster_conn, "EUR_CHF", "M1")
    assert back.index.tz is not None and str(back.index.tz) == "UTC"
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(back[col].to_numpy(), frame[col].to_numpy())
    np.testing.assert_array_equal(back.index.to_numpy(), frame["ts"].to_numpy())


def test_reload_changes_nothing_and_corrections_update(secmaster_conn):
    frame = bars_frame("2024-04-01", 500, seed=2)
    inst = Instrument.fx("USD_CAD", vendor="test")
    load_frames(secmaster_conn, inst, "M1", [("a", frame)])
    [again] = load_frames(secmaster_conn, inst, "M1", [("a", frame)])
    assert (again.written.inserted, again.written.updated, again.written.unchanged) == (0, 0, 500)
    assert count_rows(secmaster_conn, "USD_CAD", "M1") == 500
    fixed = frame.copy()
    fixed.loc[10, "close"] = fixed.loc[10, "open"]
    [corrected] = load_frames(secmaster_conn, inst, "M1", [("b", fixed)])
    assert (corrected.written.inserted, corrected.written.updated) == (0, 1)
    with secmaster_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM instruments WHERE symbol = 'USD_CAD'")
        assert cur.fetchone()[0] == 1


def test_range_reads_are_half_open(secmaster_conn):
    load_frames(secmaster_conn, Instrument.fx("EUR_SEK", vendor="test"), "M1", [("x", bars_frame("2024-05-01", 120))])
    part = read_bars(secmaster_conn, "EUR_SEK", "M1", pd.Timestamp("2024-05-01 00:30", tz="UTC"),
                     pd.Timestamp("2024-05-01 01:00", tz="UTC"))
    assert len(part) == 30
    assert part.index[0] == pd.Timestamp("2024-05-01 00:30", tz="UTC")


def test_a_bad_file_in_a_load_commits_nothing(secmaster_conn, tmp_path):
    good = bars_frame("2024-06-03", 100)
    bad = bars_frame("2024-06-04", 100)
    bad.loc[57, "high"] = bad.loc[57, "low"] - 0.01
    good.to_csv(tmp_path / "good.csv", index=False)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataValidationError, match=r"bad.csv: row 58: high is below low"):
        import_files(secmaster_conn, [tmp_path / "good.csv", tmp_path / "bad.csv"], "CAD_CHF", "M1")
    assert count_rows(secmaster_conn, "CAD_CHF", "M1") == 0
    with secmaster_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM instruments WHERE symbol = 'CAD_CHF'")
        assert cur.fetchone()[0] == 0


def test_parquet_import_and_coverage(secmaster_conn, tmp_path):
    bars_frame("2024-07-01", 300).to_parquet(tmp_path / "bars.parquet")
    [res] = import_files(secmaster_conn, [tmp_path / "bars.parquet"], "GBP_CHF", "M1", vendor="unit-test")
    assert res.written.inserted == 300
    row = next(r for r in coverage(secmaster_conn) if r["symbol"] == "GBP_CHF")
    assert row["bars"] == 300 and row["vendor"] == "unit-test"


def test_unknown_instrument_is_a_clear_error(secmaster_conn):
    with pytest.raises(NotFoundError, match="unknown instrument 'XAU_EUR'"):
        read_bars(secmaster_conn, "XAU_EUR", "M1")


def test_bars_on_another_scale_than_the_stored_ones_load_nothing(secmaster_conn):
    inst = Instrument.fx("EUR_NOK", vendor="test")
    load_frames(secmaster_conn, inst, "M1", [("real", bars_frame("2024-06-03", 60))])
    wrong = bars_frame("2024-06-04", 60)
    for col in ("open", "high", "low", "close"):
        wrong[col] *= 100  # e.g. prices in pips, or another instrument's file
    with pytest.raises(DataValidationError, match=r"prices around 1\d\d.* stored EUR_NOK bars are around 1\.\d+ \(at 2024-06-03"):
        load_frames(secmaster_conn, inst, "H1", [("pips.csv", wrong)])
    assert count_rows(secmaster_conn, "EUR_NOK", "H1") == 0 and count_rows(secmaster_conn, "EUR_NOK", "M1") == 60


def test_epoch_seconds_file_lands_on_the_right_dates(secmaster_conn, tmp_path):
    frame = bars_frame("2024-06-10", 30)
    frame["ts"] = (frame["ts"] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    frame.to_csv(tmp_path / "epoch.csv", index=False)
    [result] = import_files(secmaster_conn, [tmp_path / "epoch.csv"], "EUR_DKK", "M1")
    assert result.first == pd.Timestamp("2024-06-10", tz="UTC") and result.rows == 30
