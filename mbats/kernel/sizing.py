"""Position sizing: the ``--sizer`` text (``fixed:units=10000``, ``percent:percent=5``) to a backtrader sizer.

Backtests, research re-runs and live sessions all size through :func:`parse_sizer`.
"""

from __future__ import annotations

import math

import backtrader as bt

from mbats.errors import UsageError

MAX_UNITS = 1_000_000_000  # a fixed stake above this is a typo, not a position


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
