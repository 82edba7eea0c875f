"""Gaps against the FX trading week, and the typer commands end to end."""

from __future__ import annotations

import json

import pandas as pd
import typer
from typer.testing import CliRunner

from mbats.marketdata.calendar import trading_bar_times
from mbats.marketdata.gaps import find_gaps
from tests.marketdata.conftest import DATA_START, SYMBOL


def test_weekends_are_not_gaps():
    # Friday 2024-03-08 12:00 UTC → Monday 2024-03-11 12:00 UTC, across the US DST change
    times = trading_bar_times("2024-03-08 12:00", "2024-03-11 12:00", "M1")
    assert times[times < pd.Timestamp("2024-03-09", tz="UTC")][-1] == pd.Timestamp("2024-03-08 21:59", tz="UTC")
    assert times[times > pd.Timestamp("2024-03-09", tz="UTC")][0] == pd.Timestamp("2024-03-10 21:00", tz="UTC")  # 17:00 EDT
    report = find_gaps(times, "M1", "2024-03-08 12:00", "2024-03-11 12:00")
    assert report.missing_bars == 0 and report.gaps == [] and report.coverage == 1.0


def test_missing_bars_are_reported_as_runs():
    times = trading_bar_times("2024-03-04", "2024-03-06", "M1")
    holes = times.delete(list(range(100, 110)) + [500])
    report = find_gaps(holes, "M1", "2024-03-04", "2024-03-06")
    assert report.missing_bars == 11
    assert [(g.start, g.missing_bars) for g in report.gaps] == [(times[100], 10), (times[500], 1)]
    assert report.gaps[0].end == times[110]
    assert [g.missing_bars for g in find_gaps(holes, "M1", "2024-03-04", "2024-03-06", min_missing=2).gaps] == [10]


def test_christmas_and_daily_bars():
    days = trading_bar_times("2024-12-20", "2025-01-04", "D")
    local_days = {(t.tz_convert("America/New_York") + pd.Timedelta(hours=7)).date().isoformat() for t in days}
    assert "2024-12-25" not in local_days and "2025-01-01" not in local_days and "2024-12-24" in local_days
    assert len(days) == 8  # 23, 24, 26, 27, 30, 31 Dec, 2, 3 Jan


def _app() -> typer.Typer:
    from mbats.cli.main import app

    return app


def test_cli_download_and_gaps_json(oanda_env, clean_symbols, sim_bars):
    runner = CliRunner()
    out = runner.invoke(_app(), ["data", "download", "-i", SYMBOL, "-g", "M1", "--start", DATA_START, "--instruments", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["instruments"] == 3
    assert summary["downloads"][0]["bars_added"] == len(sim_bars[SYMBOL]) and summary["requests"] == 1 + 3

    with clean_symbols.cursor() as cur:  # punch a 30-minute hole on a Tuesday
        cur.execute("DELETE FROM bars WHERE instrument_id = (SELECT id FROM instruments WHERE symbol = %s) "
                    "AND ts >= '2024-03-05 10:00+00' AND ts < '2024-03-05 10:30+00'", (SYMBOL,))
    clean_symbols.commit()
    out = runner.invoke(_app(), ["data", "gaps", SYMBOL, "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["missing_bars"] == 30 and report["gap_count"] == 1
    assert report["gaps"][0]["start"].startswith("2024-03-05T10:00")
    human = runner.invoke(_app(), ["data", "gaps", SYMBOL])
    assert "30 missing in 1 gaps" in human.output


def test_cli_help_texts():
    runner = CliRunner()
    for args in (["data", "download", "--help"], ["data", "gaps", "--help"], ["sim", "serve", "--help"]):
        out = runner.invoke(_app(), args)
        assert out.exit_code == 0 and "--json" in out.output
