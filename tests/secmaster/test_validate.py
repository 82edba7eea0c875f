"""Bad input is rejected with a message naming the file, the row and the rule."""

import numpy as np
import pandas as pd
import pytest

from mbats.errors import DataValidationError
from mbats.secmaster.validate import validate_bars


def good_bars(n: int = 5) -> pd.DataFrame:
    ts = pd.date_range("2024-01-02", periods=n, freq="1min", tz="UTC")
    close = 1.1 + np.arange(n) * 1e-4
    return pd.DataFrame({"time": ts, "open": close, "high": close + 2e-4, "low": close - 2e-4,
                         "close": close, "volume": 10})


def test_good_bars_pass_and_come_back_in_utc():
    out = validate_bars(good_bars(), "f.csv")
    assert list(out.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert str(out["ts"].dt.tz) == "UTC"
    assert len(out) == 5


@pytest.mark.parametrize(
    ("mutate", "rule", "row"),
    [
        (lambda d: d.__setitem__("close", d["close"].where(d.index != 2, np.nan)), "close is missing, NaN", 3),
        (lambda d: d.__setitem__("low", d["low"].where(d.index != 1, 2.0)), "high is below low", 2),
        (lambda d: d.__setitem__("open", d["open"].where(d.index != 3, 1.5)), "open is outside [low, high]", 4),
        (lambda d: d.__setitem__("close", d["close"].where(d.index != 4, 0.5)), "close is outside [low, high]", 5),
        (lambda d: d.__setitem__("volume", pd.Series([1, 1, -5, 1, 1])), "volume is negative", 3),
        (lambda d: d.__setitem__("time", d["time"].where(d.index != 3, d["time"][2])), "duplicate timestamp", 4),
        (lambda d: d.__setitem__("time", d["time"].where(d.index != 3, d["time"][0] - pd.Timedelta("1h"))),
         "not sorted", 4),
    ],
)
def test_each_rule_names_file_row_and_rule(mutate, rule, row):
    bars = good_bars()
    mutate(bars)
    with pytest.raises(DataValidationError) as err:
        validate_bars(bars, "eurusd.csv")
    message = str(err.value)
    assert message.startswith(f"eurusd.csv: row {row}:"), message
    assert rule in message


def test_naive_timestamps_are_rejected_unless_a_zone_is_given():
    bars = good_bars()
    bars["time"] = bars["time"].dt.tz_localize(None)
    with pytest.raises(DataValidationError, match="naive"):
        validate_bars(bars, "naive.csv")
    out = validate_bars(bars, "naive.csv", assume_timezone="America/New_York")
    assert out["ts"].iloc[0] == pd.Timestamp("2024-01-02 05:00", tz="UTC")


def test_wrong_columns_are_named():
    bars = good_bars().rename(columns={"high": "hi"})
    with pytest.raises(DataValidationError, match="missing high"):
        validate_bars(bars, "cols.csv")
    with pytest.raises(DataValidationError, match="time column"):
        validate_bars(good_bars().drop(columns="time"), "notime.csv")
