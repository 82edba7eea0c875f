"""Bid/ask candles: downloaded by default (price MBA), stored, and used by backtests automatically."""

from __future__ import annotations

import pytest

from mbats.backtest.runner import BID_ASK, BacktestSpec, load_bars, price_sources, simulate
from mbats.kernel.costs import has_bid_ask
from mbats.marketdata.download import download_candles
from mbats.venues.oanda.client import make_client

from .conftest import DATA_START, SYMBOL


def test_downloaded_bid_ask_candles_price_the_backtest_fills(oanda_env, clean_symbols):
    download_candles(make_client(), clean_symbols, SYMBOL, "H1", start=DATA_START, progress=False)  # default MBA
    # NZD account: AUD_NZD's P&L needs no conversion; the configured 5-pip spread must be ignored
    spec = BacktestSpec(strategy="sma_crossover", instruments=[SYMBOL], granularity="H1", spread_pips=5.0,
                        params={"fast": 3, "slow": 8}, account_currency="NZD")
    bars = load_bars(spec)
    frame = bars[SYMBOL]
    assert has_bid_ask(frame) and price_sources(spec, bars) == {SYMBOL: BID_ASK}
    # the simulator's one-pip spread, split evenly around the mid
    assert ((frame["open"] - frame["bid_open"]).round(9) == 0.00005).all()
    assert ((frame["ask_close"] - frame["close"]).round(9) == 0.00005).all()
    sim = simulate(spec, bars)
    assert len(sim.recording.fills) > 2
    for fill in sim.recording.fills:  # each fill pays half the candles' spread: the ask for buys, the bid for sells
        assert fill["commission"] == pytest.approx(abs(fill["size"]) * 0.00005)
