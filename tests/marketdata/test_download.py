"""Candle and instrument downloads from the simulator through the real oandapyV20 client."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from mbats.config import reset_settings_cache
from mbats.errors import ConfigError, DataValidationError, NotFoundError, ServiceUnavailableError
from mbats.venues.oanda.client import make_client
from mbats.marketdata.download import download_candles, download_instruments
from mbats.secmaster import read_bars
from mbats.sim import Fault
from tests.marketdata.conftest import DATA_START, OTHERS, SYMBOL

PAGE = 5000


def _stored(conn, symbol=SYMBOL, granularity="M1") -> pd.DataFrame:
    conn.commit()
    try:
        return read_bars(conn, symbol, granularity)
    except NotFoundError:  # the downloader registers the instrument with its first page
        return pd.DataFrame(columns=["open", "high", "low", "close", "volume"])


def _assert_same_bars(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exactly the simulator's bars: same times (no gap, no duplicate) and prices."""
    assert len(stored) == len(expected)
    assert stored.index.is_unique
    assert (stored.index == expected.index).all()
    np.testing.assert_allclose(stored[["open", "high", "low", "close"]].to_numpy(),
                               expected[["open", "high", "low", "close"]].to_numpy(), rtol=0, atol=1e-9)


def test_download_pages_then_rerun_adds_nothing(oanda_env, clean_symbols, sim_bars):
    conn = clean_symbols
    client = make_client()
    expected = sim_bars[SYMBOL]
    assert len(expected) > 2 * PAGE

    first = download_candles(client, conn, SYMBOL, "M1", start=DATA_START, progress=False)
    assert first.bars_added == len(expected)
    assert first.pages == 3 and first.requests == 3  # 5,000 + 5,000 + 1,580, the short page ends the run
    assert first.first == expected.index[0] and first.last == expected.index[-1]
    _assert_same_bars(_stored(conn), expected)

    again = download_candles(client, conn, SYMBOL, "M1", progress=False)
    assert again.bars_added == 0 and again.bars_updated == 0 and again.requests == 1
    assert len(_stored(conn)) == len(expected)


def test_an_older_window_is_backfilled_even_when_later_bars_are_stored(oanda_env, clean_symbols, sim_bars):
    conn = clean_symbols
    client = make_client()
    expected = sim_bars[SYMBOL]
    late_start = expected.index[6_000]
    download_candles(client, conn, SYMBOL, "M1", start=late_start, progress=False)
    assert _stored(conn).index[0] == late_start
    window_end = expected.index[3_000]
    backfill = download_candles(client, conn, SYMBOL, "M1", start=DATA_START, end=window_end, progress=False)
    assert backfill.bars_added == 3_000
    again = download_candles(client, conn, SYMBOL, "M1", start=DATA_START, end=window_end, progress=False)
    assert again.bars_added == 0  # the window is complete: resume after its last stored bar
    stored = _stored(conn)
    assert len(stored) == 3_000 + len(expected) - 6_000 and stored.index.is_unique


def test_a_backfill_fetches_the_hole_before_bars_already_stored_inside_its_window(oanda_env, clean_symbols, sim_bars):
    """A scheduled run stored a few bars near the end of the window; the backfill must still fill the rest."""
    conn = clean_symbols
    client = make_client()
    expected = sim_bars[SYMBOL]
    window_end = expected.index[4_000]
    download_candles(client, conn, SYMBOL, "M1", start=expected.index[3_900], end=expected.index[3_950],
                     progress=False)
    backfill = download_candles(client, conn, SYMBOL, "M1", start=DATA_START, end=window_end, progress=False)
    stored = _stored(conn)
    assert backfill.bars_added == 4_000 - 50
    assert stored.index.equals(expected.index[:4_000])
    again = download_candles(client, conn, SYMBOL, "M1", start=DATA_START, end=window_end, progress=False)
    assert again.bars_added == 0 and again.requests == 1


def test_incremental_download_follows_the_replay_clock(oanda_env, clean_symbols, sim_bars):
    """Only complete candles are stored; later runs pick up exactly where the last stopped."""
    conn, sim = clean_symbols, oanda_env.sim
    expected = sim_bars[SYMBOL]
    sim.set_clock(expected.index[6000])  # bar 6,000 has just opened: 6,000 complete bars
    client = make_client()
    r1 = download_candles(client, conn, SYMBOL, "M1", start=DATA_START, progress=False)
    assert r1.bars_added == 6000 and r1.last == expected.index[5999]
    sim.advance(bars=123)
    r2 = download_candles(client, conn, SYMBOL, "M1", progress=False)
    assert r2.bars_added == 123 and r2.first == expected.index[6000]
    _assert_same_bars(_stored(conn), expected.iloc[:6123])


def test_coarser_granularity_and_bid_ask(oanda_env, clean_symbols, sim_bars):
    conn = clean_symbols
    result = download_candles(make_client(), conn, SYMBOL, "H1", start=DATA_START, price="MBA", progress=False)
    hourly = sim_bars[SYMBOL].resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last"}).dropna()
    assert result.bars_added == len(hourly)
    _assert_same_bars(_stored(conn, granularity="H1"), hourly)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), max(abs(open - bid_open - 0.00005)), max(abs(ask_close - close - 0.00005)) "
                    "FROM bars b JOIN instruments i ON i.id = b.instrument_id WHERE i.symbol = %s AND granularity = 'H1'",
                    (SYMBOL,))
        count, bid_err, ask_err = cur.fetchone()
    assert count == len(hourly) and bid_err < 1e-9 and ask_err < 1e-9  # one-pip spread, split evenly


def test_killed_download_resumes_without_gap_or_duplicate(oanda_env, clean_symbols, sim_bars):
    """SIGKILL a download process mid-run, run again: the stored series is exactly the source."""
    conn, sim = clean_symbols, oanda_env.sim
    sim.faults.add(Fault("delay", count=100, seconds=0.4, path="/candles"))  # slow enough to kill mid-run
    script = ("from mbats.db import connect; from mbats.venues.oanda.client import make_client; "
              "from mbats.marketdata.download import download_candles; "
              f"download_candles(make_client(), connect('secmaster'), '{SYMBOL}', 'M1', start='{DATA_START}', progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(_stored(conn)) < PAGE:  # wait for the first committed page
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "download made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = _stored(conn)
    assert PAGE <= len(partial) < len(sim_bars[SYMBOL])  # killed half-way, whole pages only
    assert len(partial) % PAGE == 0
    sim.faults.clear()

    resumed = download_candles(make_client(), conn, SYMBOL, "M1", progress=False)
    assert resumed.bars_added == len(sim_bars[SYMBOL]) - len(partial)
    _assert_same_bars(_stored(conn), sim_bars[SYMBOL])


def test_failure_after_two_pages_keeps_them_and_a_rerun_completes(oanda_env, clean_symbols, sim_bars):
    conn, sim = clean_symbols, oanda_env.sim
    sim.faults.add(Fault("status", status=503, after=2, count=100, path="/candles"))
    with pytest.raises(ServiceUnavailableError, match="HTTP 503"):
        download_candles(make_client(), conn, SYMBOL, "M1", start=DATA_START, progress=False)
    assert len(_stored(conn)) == 2 * PAGE
    sim.faults.clear()
    download_candles(make_client(), conn, SYMBOL, "M1", progress=False)
    _assert_same_bars(_stored(conn), sim_bars[SYMBOL])


def test_429_is_retried_then_succeeds(oanda_env, clean_symbols, sim_bars):
    sim = oanda_env.sim
    sim.faults.add(Fault("status", status=429, count=2, path="/candles"))
    client = make_client()
    result = download_candles(client, clean_symbols, SYMBOL, "M1", start=DATA_START, progress=False)
    assert sim.stats["fault_429"] == 2 and client.retries == 2
    assert result.bars_added == len(sim_bars[SYMBOL]) and result.requests == 3 + 2


def test_server_errors_and_timeouts_are_retried(oanda_env, clean_symbols, sim_bars, monkeypatch):
    monkeypatch.setenv("MBATS_OANDA_TIMEOUT_SECONDS", "2")
    reset_settings_cache()
    sim = oanda_env.sim
    sim.faults.add(Fault("status", status=500, count=1, path="/candles"))
    sim.faults.add(Fault("delay", seconds=3.0, count=1, path="/candles"))  # the client times out
    client = make_client()
    result = download_candles(client, clean_symbols, SYMBOL, "M1", start=DATA_START, progress=False)
    assert client.retries == 2 and result.bars_added == len(sim_bars[SYMBOL])


def test_bad_token_gives_one_clear_line_without_the_token(oanda_env, clean_symbols, monkeypatch, caplog, capsys):
    secret = "not-the-right-token-0123456789"
    monkeypatch.setenv("MBATS_OANDA_TOKEN", secret)
    reset_settings_cache()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as err:
        download_candles(make_client(), clean_symbols, SYMBOL, "M1", start=DATA_START, progress=False)
    message = str(err.value)
    assert "HTTP 401" in message and "MBATS_OANDA_TOKEN" in message and "MBATS_OANDA_ACCOUNT_ID" in message
    assert "\n" not in message
    assert oanda_env.sim.stats["401"] == 1  # not retried
    captured = capsys.readouterr()
    assert secret not in message + caplog.text + captured.out + captured.err
    assert len(_stored(clean_symbols)) == 0


def test_wrong_account_names_the_account_setting(oanda_env, clean_symbols, monkeypatch):
    monkeypatch.setenv("MBATS_OANDA_ACCOUNT_ID", "101-999-9999999-999")
    reset_settings_cache()
    with pytest.raises(ConfigError, match="HTTP 403.*MBATS_OANDA_ACCOUNT_ID"):
        download_instruments(make_client(), clean_symbols)


def test_missing_token_is_a_config_error(oanda_env, monkeypatch):
    monkeypatch.delenv("MBATS_OANDA_TOKEN")
    reset_settings_cache()
    with pytest.raises(ConfigError, match="MBATS_OANDA_TOKEN"):
        make_client()


@pytest.mark.parametrize("variant, rule", [("missing", "missing mid.h"), ("nan", "mid.c is not a number"),
                                           ("inverted", "high is below low")])
def test_malformed_candle_is_rejected_and_nothing_committed(oanda_env, clean_symbols, variant, rule):
    oanda_env.sim.faults.add(Fault("malformed", variant=variant, path="/candles"))
    with pytest.raises(DataValidationError, match=rule) as err:
        download_candles(make_client(), clean_symbols, SYMBOL, "M1", start=DATA_START, progress=False)
    assert "candle 3" in str(err.value) or "row 3" in str(err.value)
    assert len(_stored(clean_symbols)) == 0


def test_malformed_second_page_keeps_only_the_first(oanda_env, clean_symbols):
    oanda_env.sim.faults.add(Fault("malformed", after=1, path="/candles"))
    with pytest.raises(DataValidationError):
        download_candles(make_client(), clean_symbols, SYMBOL, "M1", start=DATA_START, progress=False)
    assert len(_stored(clean_symbols)) == PAGE


def test_instruments_download_is_idempotent(oanda_env, clean_symbols):
    conn = clean_symbols
    client = make_client()
    first = download_instruments(client, conn)
    second = download_instruments(client, conn)
    assert first == second and set(first) == {SYMBOL, *OTHERS}
    with conn.cursor() as cur:
        cur.execute("SELECT symbol, count(*), min(vendor), min(pip_size), min(display_precision) FROM instruments "
                    "WHERE symbol = ANY(%s) GROUP BY symbol", ([SYMBOL, *OTHERS],))
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    assert rows[SYMBOL] == (1, "oanda-sim", 0.0001, 5)  # the simulator's data is never labelled as OANDA's
    assert all(count == 1 for count, *_ in rows.values())


def test_client_stays_under_the_rate_limit(oanda_env, clean_symbols, monkeypatch):
    monkeypatch.setenv("MBATS_OANDA_REQUESTS_PER_SECOND", "20")
    reset_settings_cache()
    client = make_client()
    from oandapyV20.endpoints.accounts import AccountSummary

    started = time.monotonic()
    for _ in range(11):
        client.request(AccountSummary(client.account_id))
    assert time.monotonic() - started >= 0.5  # 10 intervals of 1/20 s
    assert oanda_env.sim.stats["429"] == 0
