"""The feature function is causal: features at bar t never change when later bars change."""

from __future__ import annotations

import numpy as np

from ml_servers import planted_bars
from mbats.ml.features import FEATURES, WARMUP_BARS, build_features, make_dataset


def _bars():
    return planted_bars(n_weeks=3).set_index("ts")


def test_features_at_t_ignore_future_bars():
    bars = _bars()
    cut = 200
    base = build_features(bars)
    changed = bars.copy()
    # Wreck every bar after the cut: prices doubled, ranges widened.
    changed.iloc[cut + 1:, :4] = changed.iloc[cut + 1:, :4].to_numpy() * 2.0
    changed.iloc[cut + 1:, 1] *= 1.05
    after = build_features(changed)
    assert list(base.columns) == list(FEATURES)
    np.testing.assert_array_equal(base.iloc[:cut + 1].to_numpy(), after.iloc[:cut + 1].to_numpy())
    assert not np.allclose(base.iloc[cut + 1:].to_numpy(), after.iloc[cut + 1:].to_numpy(), equal_nan=True)


def test_features_on_a_prefix_equal_features_on_the_whole():
    bars = _bars()
    whole = build_features(bars)
    prefix = build_features(bars.iloc[:150])
    np.testing.assert_allclose(prefix.to_numpy(), whole.iloc[:150].to_numpy(), equal_nan=True)


def test_dataset_target_is_the_next_move_and_warmup_is_dropped():
    bars = _bars()
    data = make_dataset(bars, horizon=1)
    assert data.index[0] >= bars.index[WARMUP_BARS - 10]
    assert not data[list(FEATURES)].isna().any().any()
    nxt = bars["close"].shift(-1).reindex(data.index)
    expected = (nxt > bars["close"].reindex(data.index)).astype(int)
    assert (data["target"] == expected).all()
    assert bars.index[-1] not in data.index  # the last bar has no future to label it
