"""Too little data to train says how many bars are needed and how to get them."""

from __future__ import annotations

import pytest

from mbats.errors import MbatsError
from mbats.ml.train import TrainSpec, load_dataset
from mbats.sim.data import synthetic_bars


def test_one_downloaded_day_of_h1_is_refused_with_the_bars_needed_and_the_command():
    # What the stack's first market_data_daily run stores: the previous day's 24 H1 bars.
    bars = {"EUR_USD": synthetic_bars("EUR_USD", "2026-11-30", "2026-12-01", "H1")}
    with pytest.raises(MbatsError) as exc:
        load_dataset(TrainSpec(instruments=["EUR_USD"], end=None), bars)
    text = str(exc.value)
    assert "only 0 usable rows for 5 folds" in text
    assert "EUR_USD: 24 H1 bars" in text and "about 325 H1 bars per instrument" in text
    assert "mbats data download -i EUR_USD -g H1 --start " in text


def test_the_suggested_amount_of_bars_is_enough():
    bars = {"EUR_USD": synthetic_bars("EUR_USD", "2026-11-10", "2026-12-01", "H1")}  # what the hint asks for
    data = load_dataset(TrainSpec(instruments=["EUR_USD"]), bars)
    assert len(data) >= 300
    short = {"EUR_USD": bars["EUR_USD"].iloc[:324]}
    with pytest.raises(MbatsError):
        load_dataset(TrainSpec(instruments=["EUR_USD"]), short)
