
from types import SimpleNamespace

import pytest

from mbats.kernel.costs import fill_cost_per_unit
from mbats.secmaster.instruments import Instrument, pip_size


@pytest.mark.parametrize("symbol, pip", [("EUR_USD", 0.0001), ("USD_JPY", 0.01), ("EUR_HUF", 0.01),
                                         ("USD_THB", 0.01), ("GBP_CHF", 0.0001), ("usd_jpy", 0.01)])
def test_pip_size_is_the_same_for_the_secmaster_and_every_engine(symbol, pip):
    assert pip_size(symbol) == pip
    assert Instrument.fx(symbol, vendor="test").pip_size == pip
    assert fill_cost_per_unit(SimpleNamespace(spread_pips=2.0, slippage_pips=0.0), symbol) == pip  # kernel costs use it
