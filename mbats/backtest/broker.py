"""Broker costs for FX: commission on notional plus half the spread on every fill, and sizers."""

from __future__ import annotations

import math

import backtrader as bt

from mbats.errors import UsageError

MAX_UNITS = 1_000_000_000  # a fixed stake above this is a typo, not a position


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


def parse_sizer(spec: str) -> tuple[type[bt.Sizer], dict]:
    """``fixed:units=10000`` or ``percent:percent=5`` → (sizer class, kwargs)."""
    name, _, args = spec.partition(":")
    kwargs: dict[str, float] = {}
    for part in filter(None, args.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"--sizer '{spec}': expected key=value after ':'")
        try:
            kwargs[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--sizer '{spec}': {key} must be a number") from None
    if name == "fixed":
        units = kwargs.pop("units", 10_000)
        if not (math.isfinite(units) and units.is_integer() and 1 <= units <= MAX_UNITS):
            raise UsageError(f"--sizer '{spec}': units must be a whole number from 1 to {MAX_UNITS:,}")
        return bt.sizers.FixedSize, {"stake": int(units)} | _no_extra(spec, kwargs)
    if name == "percent":
        percent = kwargs.pop("percent", 10.0)
        if not (math.isfinite(percent) and 0 < percent <= 100):
            raise UsageError(f"--sizer '{spec}': percent must be above 0 and at most 100")
        return bt.sizers.PercentSizerInt, {"percents": percent} | _no_extra(spec, kwargs)
    raise UsageError(f"--sizer: unknown sizer '{name}'; use fixed:units=N or percent:percent=P")


def _no_extra(spec: str, leftover: dict) -> dict:
    if leftover:
        raise UsageError(f"--sizer '{spec}': unknown option(s) {', '.join(leftover)}")
    return {}
