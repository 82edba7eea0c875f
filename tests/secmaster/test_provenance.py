"""Provenance per load: every bar says which load wrote it, so one instrument can hold bars from
several sources, a later load never relabels bars it did not change, and a run records the
sources of exactly the bars it read."""

import numpy as np
import pandas as pd

from mbats.secmaster import Instrument
from mbats.secmaster.bars import coverage
from mbats.secmaster.ingest import load_frames
from mbats.secmaster.loads import bar_sources


def hourly(start: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    c = 1.35 + np.cumsum(rng.normal(0, 5e-4, n))
    return pd.DataFrame({"ts": ts, "open": c, "high": c + 3e-4, "low": c - 3e-4, "close": c, "volume": 1})


def test_mixed_sources_are_kept_per_bar_listed_and_recorded_by_a_run(secmaster_conn, risk_conn):
    from mbats.backtest.runner import BacktestSpec, run_backtest

    symbol = "EUR_SGD"
    downloaded = Instrument.fx(symbol, vendor="oanda-sim", is_synthetic=True, source="oanda:sim")
    from_file = Instrument.fx(symbol, vendor="histdata", source="eursgd_2024.csv")
    week1, week2 = hourly("2024-04-01", 120, 1), hourly("2024-04-08", 120, 2)
    load_frames(secmaster_conn, downloaded, "H1", [("sim download", week1)], kind="download")
    load_frames(secmaster_conn, from_file, "H1", [("eursgd_2024.csv", week2)])

    # Re-loading week 1 from the file with 10 corrected bars relabels only those 10.
    corrected = week1.copy()
    corrected.loc[:9, ["open", "high", "low", "close"]] += 1e-4
    load_frames(secmaster_conn, from_file, "H1", [("eursgd_2024.csv", corrected)])
    loads = bar_sources(secmaster_conn, symbol, "H1")
    assert sorted((s["vendor"], s["is_synthetic"], s["bars"]) for s in loads) == [
        ("histdata", False, 10), ("histdata", False, 120), ("oanda-sim", True, 110)]  # three loads
    assert len({s["load_id"] for s in loads}) == 3

    row = next(r for r in coverage(secmaster_conn) if r["symbol"] == symbol)
    assert row["bars"] == 240 and row["synthetic"] == "mixed" and row["sources"] == 2
    assert row["vendor"] == "histdata, oanda-sim (synthetic)"  # most bars first

    run = run_backtest(BacktestSpec("sma_crossover", [symbol], "H1", end=pd.Timestamp("2024-04-08", tz="UTC")
                                    .to_pydatetime(), params={"fast": 3, "slow": 8}, account_currency=symbol[-3:]), track=False,
                       write_report=False)
    with risk_conn.cursor() as cur:
        cur.execute("SELECT data_sources FROM runs WHERE id = %s", (run.run_id,))
        recorded = cur.fetchone()[0]
    assert {(d["vendor"], d["bars"]) for d in recorded} == {("oanda-sim", 110), ("histdata", 10)}
    assert sum(d["bars"] for d in recorded) == run.bars == 120
    assert all(d["load_id"] and d["instrument"] == symbol for d in recorded)


def test_a_reload_that_changes_nothing_leaves_no_empty_load(secmaster_conn):
    inst = Instrument.fx("EUR_HKD", vendor="histdata")
    frame = hourly("2024-05-06", 48, 3)
    for _ in range(2):
        load_frames(secmaster_conn, inst, "H1", [("eurhkd.csv", frame)])
    with secmaster_conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(rows) FROM loads l JOIN instruments i ON i.id = l.instrument_id "
                    "WHERE i.symbol = 'EUR_HKD'")
        assert cur.fetchone() == (1, 48)


def test_a_sweep_records_the_sources_of_its_bars_on_every_run(secmaster_conn, risk_conn):
    from mbats.backtest.runner import BacktestSpec
    from mbats.research.sweep import SweepRequest, run_sweep

    inst = Instrument.fx("EUR_PLN", vendor="oanda-sim", is_synthetic=True, source="oanda:sim")
    load_frames(secmaster_conn, inst, "H1", [("sim download", hourly("2024-06-03", 200, 4))], kind="download")
    result = run_sweep(SweepRequest(BacktestSpec("sma_crossover", ["EUR_PLN"], "H1", account_currency="PLN"), {"fast": [3, 5]}, top=2,
                                    workers=1, track=False))
    run_ids = [s.run_id for s in result.rerun]
    with risk_conn.cursor() as cur:
        cur.execute("SELECT data_sources FROM runs WHERE id = ANY(%s)", (run_ids,))
        recorded = [r[0] for r in cur.fetchall()]
    assert len(recorded) == 2 and all(
        [(d["vendor"], d["is_synthetic"], d["bars"]) for d in r] == [("oanda-sim", True, 200)] for r in recorded)
