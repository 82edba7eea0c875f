"""The run tear sheet: after a real backtest on the sample data the HTML report is self-contained and
holds every section, the price chart marks each trade's entry and exit where the risk DB has them,
and the monthly returns are the month-end equity ratios on FX days."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mbats.risk.metrics import fx_day_labels
from mbats.risk.store import read_frame

INLINE_MARK = "Bokeh.set_log_level"
SECTIONS = ["price-chart", "equity", "underwater", "monthly-returns", "rolling", "trade-pnl", "exposure", "trades"]


@pytest.fixture(scope="module")
def backtest(pg_server):
    from mbats.backtest.runner import BacktestSpec, run_backtest
    from mbats.db import connect
    from mbats.secmaster.samples import load_samples

    conn = connect("secmaster")
    try:
        load_samples(conn)
    finally:
        conn.close()
    spec = BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="H1", spread_pips=1.0,
                        account_currency="EUR")
    result = run_backtest(spec, track=False)
    result.spec = spec  # for the MLflow test
    return result, Path(result.report_path).read_text(encoding="utf-8")


def _charts(html: str) -> dict[str, dict]:
    return {m.group(1): json.loads(m.group(2).replace("<\\/", "</")) for m in re.finditer(
        r'<script type="application/json" class="bokeh-item" data-target="([^"]+)">(.*?)</script>', html, re.S)}


def _source(doc, name: str) -> dict[str, list]:
    """The data columns of the ColumnDataSource called ``name`` anywhere in a bokeh JSON document."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            attrs = node.get("attributes", {})
            if node.get("name") == "ColumnDataSource" and attrs.get("name") == name:
                found.append({k: v for k, v in attrs["data"]["entries"]})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert len(found) == 1, f"{name}: {len(found)} sources"
    return found[0]


def test_the_report_has_every_section_and_needs_no_network(backtest):
    result, html = backtest
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    # nothing is fetched when the file is opened: no remote script, stylesheet, image or frame
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)=["\']?(https?:)?//', html, re.I)
    assert "Bokeh.embed.embed_item" in html and INLINE_MARK in html   # bokeh's own JS is in the file
    assert set(_charts(html)) == {f"{s}-plot" for s in ("price-chart", "equity-chart", "underwater", "rolling",
                                                         "trade-pnl", "exposure")}
    # money is in the run's account currency
    assert "net P&amp;L (EUR)" in html and "account value (EUR) vs buy-and-hold" in html


def test_the_price_chart_marks_every_entry_and_exit_of_the_trades_in_the_risk_db(backtest, risk_conn):
    result, html = backtest
    trades = read_frame(risk_conn, "SELECT entry_ts, entry_price, exit_ts, exit_price, is_open FROM trades "
                         "WHERE run_id = %s ORDER BY entry_ts", (result.run_id,))
    closed = trades[~trades["is_open"]]
    assert len(closed) >= 5
    doc = _charts(html)["price-chart-plot"]
    entries, exits = _source(doc, "trade_entries"), _source(doc, "trade_exits")
    assert len(entries["x"]) + len(exits["x"]) == 2 * len(closed) + (len(trades) - len(closed))

    def ms(stamps) -> list[int]:
        return sorted(int(pd.Timestamp(t).timestamp() * 1000) for t in stamps)

    assert sorted(round(x) for x in entries["x"]) == ms(trades["entry_ts"])
    assert sorted(round(x) for x in exits["x"]) == ms(closed["exit_ts"])
    assert sorted(entries["y"]) == pytest.approx(sorted(trades["entry_price"]))
    assert sorted(exits["y"]) == pytest.approx(sorted(closed["exit_price"]))
    # the price line under the markers is the run's instrument
    assert "EUR_USD close" in json.dumps(doc)


def test_monthly_returns_are_month_end_equity_ratios_on_fx_days(backtest, risk_conn):
    result, html = backtest
    equity = read_frame(risk_conn, "SELECT ts, value FROM equity WHERE run_id = %s ORDER BY ts",
                        (result.run_id,)).set_index("ts")["value"]
    # by hand: the last value of each FX day, the last FX day of each month, over the month before
    days = pd.to_datetime(fx_day_labels(equity.index), unit="D")
    month_end: dict[str, float] = {}
    for day, value in zip(days, equity.to_numpy()):
        month_end[day.strftime("%Y-%m")] = float(value)
    expected, previous = {}, float(equity.iloc[0])
    for month, value in month_end.items():
        expected[month] = round(100.0 * (value / previous - 1.0), 2)
        previous = value
    shown = {m: float(v) for m, v in re.findall(r'data-month="(\d{4}-\d{2})"[^>]*>(-?[\d.]+)<', html)}
    assert len(shown) >= 2 and shown == expected
    # a year compounds its months
    for year in {m[:4] for m in expected}:
        value = 1.0
        for month, pct in expected.items():
            if month.startswith(year):
                value *= 1 + pct / 100
        shown_year = float(re.search(rf'data-year="{year}">(-?[\d.]+)<', html).group(1))
        assert shown_year == pytest.approx(100 * (value - 1), abs=0.02)


def test_the_report_renders_in_headless_chromium_without_errors_or_requests(backtest):
    """Opened from disk, every chart renders, the console shows no error and nothing is fetched."""
    import time

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    result, _ = backtest
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 "--window-size=1400,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(180)
        driver.get(Path(result.report_path).as_uri())
        rendered, deadline = 0, time.time() + 180
        while time.time() < deadline:
            # one bokeh document per chart, each drawn into its section's element
            rendered = driver.execute_script(
                "return window.Bokeh ? [Bokeh.documents.length, "
                "[...document.querySelectorAll('div.chart')].filter(d => d.children.length > 0).length] : [0, 0]")
            if rendered == [6, 6]:
                break
            time.sleep(1)
        assert rendered == [6, 6]
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
        assert urls and all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls
    finally:
        driver.quit()


def _mbats(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbats.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250"}, timeout=900)


def test_mbats_report_html_rewrites_the_tear_sheet_from_the_risk_db(backtest, tmp_path):
    result, original = backtest
    target = tmp_path / "sheets" / "run.html"
    done = _mbats("report", str(result.run_id), "--html", str(target))
    assert done.returncode == 0, done.stderr
    assert str(target) in done.stdout.replace("\n", "")
    html = target.read_text(encoding="utf-8")
    # the same trades marked at the same places and the same months as the report the backtest wrote
    for name in ("trade_entries", "trade_exits"):
        assert _source(_charts(html)["price-chart-plot"], name) == _source(_charts(original)["price-chart-plot"], name)
    month = r'data-month="(\d{4}-\d{2})"[^>]*>(-?[\d.]+)<'
    assert re.findall(month, html) == re.findall(month, original)
    # without --html it names the report the backtest wrote
    shown = _mbats("report", str(result.run_id))
    assert shown.returncode == 0 and result.report_path in shown.stdout.replace("\n", "")
    bad = _mbats("report", str(result.run_id), "--html", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --html")
    assert "Traceback" not in bad.stderr


def test_the_tear_sheet_is_the_report_a_backtest_logs_to_mlflow(backtest):
    import mlflow

    from mbats.tracking import log_backtest

    result, html = backtest
    mlflow_run_id = log_backtest(result, result.spec)
    local = mlflow.artifacts.download_artifacts(run_id=mlflow_run_id, artifact_path="report/report.html")
    logged = Path(local).read_text(encoding="utf-8")
    assert logged == html and 'id="price-chart"' in logged


def test_long_series_are_thinned_to_their_envelope_keeping_peaks_and_troughs():
    import numpy as np

    from mbats.risk.tearsheet import envelope

    values = np.cumsum(np.random.default_rng(3).normal(0, 1, 370_000))   # a year of minutes
    kept = envelope(values, 20_000)
    assert len(kept) <= 20_001 and kept[0] == 0 and kept[-1] == len(values) - 1
    assert values.argmin() in kept and values.argmax() in kept
    assert (np.diff(kept) > 0).all()
    np.testing.assert_array_equal(envelope(values[:500], 20_000), np.arange(500))  # short series: every point
