"""Model inputs from security-master bars — the one function both training and the strategy use.

Every feature at bar *t* uses bars up to and including *t* only (indicators are causal: rolling
windows and exponential averages that look backwards), so a model trained on them can be
evaluated bar by bar without look-ahead. The target is the only thing that looks forward.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES: tuple[str, ...] = ("ret_1", "ret_3", "ret_12", "vol_24", "rsi_14", "stoch_k_14", "atr_14_pct",
                             "range_pct", "close_vs_sma_24", "hour_sin", "hour_cos")
WARMUP_BARS = 30  # the longest window below plus slack; earlier rows are NaN and dropped
LEADING_NAN_ROWS = 24  # rows at the start without every feature (vol_24 of 1-bar returns); make_dataset drops them


def _rsi(close: pd.Series, period: int) -> pd.Series:
    """Wilder's RSI (exponential average with alpha 1/period)."""
    delta = close.diff()
    gain = delta.clip(lower=0.0).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    loss = (-delta.clip(upper=0.0)).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    rs = gain / loss.replace(0.0, np.nan)
    return (100.0 - 100.0 / (1.0 + rs)).fillna(100.0).where(gain.notna())


def _atr(bars: pd.DataFrame, period: int) -> pd.Series:
    prev_close = bars["close"].shift(1)
    true_range = pd.concat([bars["high"] - bars["low"], (bars["high"] - prev_close).abs(),
                            (bars["low"] - prev_close).abs()], axis=1).max(axis=1)
    return true_range.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def build_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Feature frame (columns :data:`FEATURES`, float64) on the bars' index; warm-up rows are NaN."""
    close = bars["close"].astype("float64")
    high, low = bars["high"].astype("float64"), bars["low"].astype("float64")
    log_close = np.log(close)
    ret_1 = log_close.diff()
    lowest, highest = low.rolling(14).min(), high.rolling(14).max()
    hours = bars.index.hour + bars.index.minute / 60.0
    out = pd.DataFrame({
        "ret_1": ret_1,
        "ret_3": log_close.diff(3),
        "ret_12": log_close.diff(12),
        "vol_24": ret_1.rolling(24).std(),
        "rsi_14": _rsi(close, 14) / 100.0,
        "stoch_k_14": ((close - lowest) / (highest - lowest).replace(0.0, np.nan)).fillna(0.5).where(lowest.notna()),
        "atr_14_pct": _atr(bars, 14) / close,
        "range_pct": (high - low) / close,
        "close_vs_sma_24": close / close.rolling(24).mean() - 1.0,
        "hour_sin": np.sin(2 * np.pi * hours / 24.0),
        "hour_cos": np.cos(2 * np.pi * hours / 24.0),
    }, index=bars.index)
    return out[list(FEATURES)].astype("float64")


def forward_return(bars: pd.DataFrame, horizon: int = 1) -> pd.Series:
    """Log return from the close of *t* to the close of *t + horizon* (the label's source)."""
    log_close = np.log(bars["close"].astype("float64"))
    return log_close.shift(-horizon) - log_close


def make_dataset(bars: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """Features plus ``fwd_ret`` and ``target`` (1 when the close rises over ``horizon`` bars), complete rows only."""
    frame = build_features(bars)
    frame["fwd_ret"] = forward_return(bars, horizon)
    frame = frame.dropna()
    frame["target"] = (frame["fwd_ret"] > 0).astype("int64")
    return frame
