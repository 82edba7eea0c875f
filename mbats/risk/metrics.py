"""Performance metrics of a run, from its equity curve and round-trip trades.

Return-based ratios come from empyrical on daily returns over the FX day: a day ends at 17:00
America/New_York (the OANDA / interbank rollover), and the market's weekend folds into the
neighbouring weekdays, so a week has 5 FX days (a Sunday-evening session is Monday's) and a year
``FX_DAYS_PER_YEAR`` = 260 of them (annualisation factor). Drawdowns are measured on the
full-resolution equity curve; trade statistics follow their usual definitions
(SQN after Van Tharp: sqrt(N) * mean / stdev of trade P&L).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

FX_DAY_TZ = "America/New_York"
FX_DAY_END_HOUR = 17            # New York time at which one FX day ends and the next begins
FX_DAYS_PER_YEAR = 260          # 5 FX days a week x 52 weeks: the annualisation factor of every ratio
_NS_PER_DAY = 86_400_000_000_000
_FX_YEAR = {"annualization": FX_DAYS_PER_YEAR}

METRIC_DESCRIPTIONS: dict[str, str] = {
    "total_return_pct": "total return over the run, %",
    "annual_return_pct": "compound annual growth rate, %",
    "annual_volatility_pct": "annualised volatility of FX-day returns, %",
    "sharpe": "annualised Sharpe ratio (risk-free 0)",
    "sortino": "annualised Sortino ratio",
    "calmar": "annual return / max drawdown",
    "max_drawdown_pct": "deepest peak-to-trough fall of equity, %",
    "max_drawdown_days": "longest time under a previous peak, days",
    "trades": "closed round-trip trades",
    "win_rate_pct": "winning trades / closed trades, %",
    "profit_factor": "gross profit / gross loss",
    "expectancy": "mean net P&L per trade",
    "sqn": "system quality number",
    "exposure_pct": "bars with an open position, %",
    "var_95_1d_pct": "1-day 95% value at risk (loss as a positive %)",
    "cvar_95_1d_pct": "1-day 95% conditional VaR / expected shortfall, %",
    "final_value": "account value at the end",
}

# metrics that are amounts of money, in the run's account currency (reports label them with it)
MONEY_METRICS = frozenset({"expectancy", "final_value"})


def fx_day_labels(index: pd.DatetimeIndex) -> np.ndarray:
    """FX trading day of each timestamp, as int days since 1970-01-01 (only Monday..Friday occur).

    A timestamp at or after 17:00 New York belongs to the next day (DST handled by the zone); the
    closed market's hours fold in: Friday-after-17:00 into Friday, Sunday-before-17:00 into Monday.
    """
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    # backtrader's float day numbers put a 22:00:00 bar at 21:59:59.999997: round to the second (no FX
    # candle is finer than 5 s) so a bar on the 17:00 boundary is not pushed into the previous day
    idx = idx.round("s")
    local = idx.tz_convert(FX_DAY_TZ).tz_localize(None) + pd.Timedelta(hours=24 - FX_DAY_END_HOUR)
    days = local.as_unit("ns").asi8 // _NS_PER_DAY
    weekday = (days + 3) % 7                      # 1970-01-01 was a Thursday; Monday = 0
    days = np.where(weekday == 5, days - 1, days)  # Saturday -> Friday
    return np.where(weekday == 6, days + 1, days)  # Sunday -> Monday


def fx_day_last(index: pd.DatetimeIndex) -> np.ndarray:
    """Position of each FX day's last bar in a sorted index (the bars whose values make the daily series)."""
    days = fx_day_labels(index)
    if not len(days):
        return np.empty(0, np.int64)
    return np.flatnonzero(np.append(days[1:] != days[:-1], True)).astype(np.int64)


def fx_daily(equity: pd.Series) -> pd.Series:
    """Account value at the close of each FX day (the last value seen in it)."""
    equity = equity.dropna()
    return equity.iloc[fx_day_last(equity.index)]


def drawdown(values: pd.Series) -> pd.Series:
    """Drawdown in % below the running peak (0 at a new high, negative below)."""
    peak = values.cummax()
    return 100.0 * (values / peak - 1.0)


def _drawdown_duration_days(values: pd.Series) -> float:
    """Longest stretch spent below a previous peak, in calendar days (an open stretch counts).

    Each stretch runs from a peak to the next bar at or above it (or to the end), so the
    answer is the widest gap between consecutive peak times that has bars below in between.
    """
    if values.empty:
        return 0.0
    arr = values.to_numpy(dtype="float64")
    peaks = np.flatnonzero(arr >= np.maximum.accumulate(arr))
    times = values.index.asi8
    ends = np.append(peaks[1:], len(arr) - 1)
    underwater = ends - peaks > (np.arange(len(peaks)) < len(peaks) - 1)  # a gap of 1 bar is no stretch
    if not underwater.any():
        return 0.0
    longest_ns = (times[ends[underwater]] - times[peaks[underwater]]).max()
    return float(pd.Timedelta(int(longest_ns), unit=values.index.unit).total_seconds() / 86400.0)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def compute_metrics(equity: pd.Series, trades: pd.DataFrame, bars: int, bars_in_market: int) -> dict[str, float | None]:
    """Metrics for one run; ``equity`` is account value indexed by UTC time."""
    metrics: dict[str, float | None] = {}
    start_value, end_value = float(equity.iloc[0]), float(equity.iloc[-1])
    daily = fx_daily(equity)
    daily_returns = daily.pct_change().dropna()
    metrics["total_return_pct"] = 100.0 * (end_value / start_value - 1.0)
    metrics["final_value"] = end_value
    if len(daily_returns) >= 2:
        import empyrical as ep  # here, not at import: it loads scipy (~70 MB) that the sweep scoring core never needs

        metrics["annual_return_pct"] = _finite(100.0 * ep.annual_return(daily_returns, **_FX_YEAR))
        metrics["annual_volatility_pct"] = _finite(100.0 * ep.annual_volatility(daily_returns, **_FX_YEAR))
        metrics["sharpe"] = _finite(ep.sharpe_ratio(daily_returns, **_FX_YEAR))
        metrics["sortino"] = _finite(ep.sortino_ratio(daily_returns, **_FX_YEAR))
        metrics["calmar"] = _finite(ep.calmar_ratio(daily_returns, **_FX_YEAR))
        metrics["var_95_1d_pct"] = _finite(-100.0 * ep.value_at_risk(daily_returns, cutoff=0.05))
        metrics["cvar_95_1d_pct"] = _finite(-100.0 * ep.conditional_value_at_risk(daily_returns, cutoff=0.05))
    else:
        for key in ("annual_return_pct", "annual_volatility_pct", "sharpe", "sortino", "calmar",
                    "var_95_1d_pct", "cvar_95_1d_pct"):
            metrics[key] = None
    metrics["max_drawdown_pct"] = float(-drawdown(equity).min())
    metrics["max_drawdown_days"] = _drawdown_duration_days(equity)

    closed = trades[~trades["is_open"]] if len(trades) else trades
    pnl = closed["pnl_net"].to_numpy(dtype="float64") if len(closed) else np.array([])
    metrics["trades"] = float(len(pnl))
    if len(pnl):
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        metrics["win_rate_pct"] = 100.0 * len(wins) / len(pnl)
        metrics["profit_factor"] = _finite(wins.sum() / -losses.sum()) if len(losses) else None
        metrics["expectancy"] = float(pnl.mean())
        std = pnl.std(ddof=1) if len(pnl) > 1 else 0.0
        metrics["sqn"] = float(math.sqrt(len(pnl)) * pnl.mean() / std) if std > 0 else None
    else:
        metrics.update(win_rate_pct=None, profit_factor=None, expectancy=None, sqn=None)
    metrics["exposure_pct"] = 100.0 * bars_in_market / bars if bars else 0.0
    return metrics
