"""Fill costs for FX: commission on notional plus half the spread (and slippage) on every fill.

:func:`fill_cost_per_unit` is the one cost rule; backtrader books it through :class:`FxCosts`, the
vectorised and compiled research engines and live sessions call it directly.
"""

from __future__ import annotations

from typing import Protocol

import backtrader as bt
import pandas as pd

from mbats.secmaster.instruments import pip_size


class CostSettings(Protocol):
    """What the cost rule reads from a run's settings (a BacktestSpec, a sweep's base spec)."""

    spread_pips: float
    slippage_pips: float
    commission: float


def fill_cost_per_unit(spec: CostSettings, symbol: str, bid_ask: bool = False) -> float:
    """Quote-currency cost per unit of every fill: half the spread (unless bid/ask) plus the slippage.

    Fills stay at the bar's (mid) price and these are booked as costs, like the spread always was:
    a buy that slips 0.5 pip pays 0.5 pip per unit, exactly as if it had filled 0.5 pip higher.
    With bid/ask candles the bar's own ask (buys) or bid (sells) replaces the configured spread.
    The pip is the security master's rule (:func:`mbats.secmaster.instruments.pip_size`).
    """
    return ((0.0 if bid_ask else spec.spread_pips / 2.0) + spec.slippage_pips) * pip_size(symbol)


def has_bid_ask(frame: pd.DataFrame) -> bool:
    """Bars that carry the bid and ask opens fills need (every bar)."""
    return all(c in frame.columns and frame[c].notna().all() for c in ("bid_open", "ask_open"))


def side_costs(spec: CostSettings, symbol: str, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per-bar cost per unit of a buy and of a sell filled at that bar's open."""
    if has_bid_ask(frame):
        extra = fill_cost_per_unit(spec, symbol, bid_ask=True)
        return frame["ask_open"] - frame["open"] + extra, frame["open"] - frame["bid_open"] + extra
    flat = pd.Series(fill_cost_per_unit(spec, symbol), index=frame.index)
    return flat, flat


class FxCosts(bt.CommInfoBase):
    """Charge ``units * (half_spread + price * rate)`` per fill.

    Fills stay at the bar's (mid) price and the spread is booked as a cost, so trades are
    comparable with vectorised research that uses mid prices. P&L is in the quote currency,
    which equals the account currency for XXX_USD pairs and a USD account.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_FIXED),
        ("leverage", 50.0),  # OANDA's maximum for majors; margin = notional / leverage
        ("half_spread", 0.0),
        ("rate", 0.0),
        # bid/ask candles: per-bar costs of a buy (ask open - open) and a sell (open - bid open) replace
        # half_spread, so a buy pays exactly the ask and a sell the bid of its fill bar's open
        ("data", None),
        ("buy_costs", None),
        ("sell_costs", None),
    )

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return abs(size) * (self.per_unit(size) + price * self.p.rate)

    def per_unit(self, size: float) -> float:
        if self.p.buy_costs is None:
            return self.p.half_spread
        bar = len(self.p.data) - 1  # the bar the order fills on (market orders fill at its open)
        return (self.p.buy_costs if size > 0 else self.p.sell_costs)[bar] + self.p.half_spread
