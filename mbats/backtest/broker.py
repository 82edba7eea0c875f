"""Broker costs for FX: commission on notional plus half the spread on every fill, and sizers."""

from __future__ import annotations

import backtrader as bt

from mbats.errors import MbatsError


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
    )

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return abs(size) * (self.p.half_spread + price * self.p.rate)


def parse_sizer(spec: str) -> tuple[type[bt.Sizer], dict]:
    """``fixed:units=10000`` or ``percent:percent=5`` → (sizer class, kwargs)."""
    name, _, args = spec.partition(":")
    kwargs: dict[str, float] = {}
    for part in filter(None, args.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise MbatsError(f"sizer '{spec}': expected key=value after ':'")
        try:
            kwargs[key.strip()] = float(value)
        except ValueError:
            raise MbatsError(f"sizer '{spec}': {key} must be a number") from None
    if name == "fixed":
        return bt.sizers.FixedSize, {"stake": int(kwargs.pop("units", 10_000))} | _no_extra(spec, kwargs)
    if name == "percent":
        return bt.sizers.PercentSizerInt, {"percents": kwargs.pop("percent", 10.0)} | _no_extra(spec, kwargs)
    raise MbatsError(f"unknown sizer '{name}'; use fixed:units=N or percent:percent=P")


def _no_extra(spec: str, leftover: dict) -> dict:
    if leftover:
        raise MbatsError(f"sizer '{spec}': unknown option(s) {', '.join(leftover)}")
    return {}
