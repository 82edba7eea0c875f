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


# --- plausibility: prices, time window, epoch numbers, UTC offsets -------------------------------

def hourly(n: int = 48, start: str = "2024-03-04", price: float = 1.1) -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    close = price * (1 + np.sin(np.arange(n) / 5) * 1e-3)
    return pd.DataFrame({"time": ts, "open": close, "high": close * 1.0005, "low": close * 0.9995,
                         "close": close, "volume": 10})


@pytest.mark.parametrize(("value", "rule"), [
    (1e300, "outside the plausible price range"),
    (1.1e5, "far from the neighbouring bars"),
    (0.011, "far from the neighbouring bars"),
])
def test_an_absurd_price_in_one_bar_is_rejected_naming_the_row(value, rule):
    bars = hourly()
    for col in ("open", "high", "low", "close"):
        bars.loc[7, col] = value
    with pytest.raises(DataValidationError, match=rf"row 8: .*{rule}"):
        validate_bars(bars, "spike.csv")


def test_a_known_instrument_has_its_own_price_scale():
    with pytest.raises(DataValidationError, match="plausible USD_JPY price range 50 to 400"):
        validate_bars(hourly(price=1.1), "usdjpy.csv", symbol="USD_JPY")
    assert len(validate_bars(hourly(price=151.2), "usdjpy.csv", symbol="USD_JPY")) == 48


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)])
def test_numeric_epoch_times_are_read_in_their_unit(unit, scale):
    bars = hourly()
    expected = bars["time"]
    seconds = (expected - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    bars["time"] = seconds.astype("int64") * scale
    out = validate_bars(bars, f"epoch_{unit}.csv")
    assert (out["ts"].reset_index(drop=True) == expected.dt.as_unit("us").reset_index(drop=True)).all()
    assert out["ts"].iloc[0] == pd.Timestamp("2024-03-04", tz="UTC")


def test_time_unit_option_overrides_and_wrong_unit_is_explained():
    bars = hourly()
    bars["time"] = ((bars["time"] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64")
    with pytest.raises(DataValidationError, match="time before 1971-01-01.*--time-unit"):
        validate_bars(bars, "s_read_as_ns.csv", time_unit="ns")
    assert validate_bars(bars, "s.csv", time_unit="s")["ts"].iloc[0] == pd.Timestamp("2024-03-04", tz="UTC")
    bars["time"] = np.arange(len(bars)) + 5  # tiny numbers: no unit fits
    with pytest.raises(DataValidationError, match="pass --time-unit"):
        validate_bars(bars, "tiny.csv")


def test_timestamps_outside_the_plausible_window_are_rejected():
    with pytest.raises(DataValidationError, match="time in the future"):
        validate_bars(hourly(start="2099-01-01"), "future.csv")
    with pytest.raises(DataValidationError, match="time before 1971-01-01"):
        validate_bars(hourly(start="1960-01-01"), "old.csv")


def test_mixed_utc_offsets_are_converted_and_a_missing_offset_is_named():
    bars = hourly(n=3)
    bars["time"] = ["2024-03-30T23:00:00+01:00", "2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00"]
    out = validate_bars(bars, "dst.csv")
    assert list(out["ts"].dt.strftime("%H:%M")) == ["22:00", "00:00", "01:00"]
    bars["time"] = ["2024-03-30T23:00:00+01:00", "2024-03-31T01:00:00", "2024-03-31T03:00:00+02:00"]
    with pytest.raises(DataValidationError, match="row 2: time '2024-03-31T01:00:00' has no UTC offset") as info:
        validate_bars(bars, "half.csv")
    assert "utc=True" not in str(info.value)  # pandas' advice is not something a CLI user can act on
