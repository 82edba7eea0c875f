"""What a user asks for (a backtest, a sweep, a live session, a download), checked before any work.

Each request is a pydantic model with the allowed ranges written next to the field. Every entry
point (CLI options, DAG ``conf``, library calls constructing a ``BacktestSpec``) goes through
:func:`check`, which turns a :class:`pydantic.ValidationError` into one :class:`UsageError` line
naming the option (``--commission``) or field (``commission``) and its allowed range.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Mapping, TypeVar

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from mbats.errors import MbatsError, UsageError

SYMBOL_PATTERN = r"^[A-Za-z0-9]{2,12}_[A-Za-z0-9]{2,12}$"


def check_symbol(value: str) -> str:
    if not re.fullmatch(SYMBOL_PATTERN, value):
        raise ValueError(f"'{value}' is not an instrument such as EUR_USD (two codes joined by _)")
    return value


Symbol = Annotated[str, AfterValidator(check_symbol)]
# Bars and date options outside this window are typos or unit mix-ups (epoch 0 is 1970-01-01).
EARLIEST = datetime(1971, 1, 1, tzinfo=timezone.utc)
MAX_CASH = 1e12
MAX_COMMISSION = 0.05   # 5 % of notional per fill is already absurd for FX
MAX_SPREAD_PIPS = 500.0
MAX_WARMUP = 100_000
MAX_WORKERS = 256

M = TypeVar("M", bound=BaseModel)


def latest_plausible() -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=1)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(exc: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """One line for all problems: ``--cash: must be greater than 0 (got 0.0)``."""
    options = options or {}
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        name = options.get(loc[0], loc[0]) if loc else ""
        if len(loc) > 1:
            name += "[" + "][".join(loc[1:]) + "]"
        msg, got = err.get("msg", "invalid"), ""
        if msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")  # our own validators say what they got
        else:
            msg = "must be " + msg.removeprefix("Input should be ") if msg.startswith("Input should be ") else msg
            got = f" (got {_short(err['input'])})" if "input" in err and not isinstance(err["input"], dict) else ""
        for field, option in options.items():  # model-level messages name fields as «field»
            msg = msg.replace(f"«{field}»", option)
        msg = re.sub(r"«(\w+)»", r"\1", msg)
        parts.append(f"{name}: {msg}{got}" if name else f"{msg}{got}")
    return "; ".join(parts)


def check(model: type[M], values: Mapping[str, Any], options: Mapping[str, str] | None = None) -> M:
    """``model`` validated from ``values``, or a :class:`UsageError` naming the options at fault."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise UsageError(describe(exc, options)) from None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _in_window(value: datetime | None) -> datetime | None:
    value = _aware(value)
    if value is not None and not EARLIEST <= value <= datetime(2100, 1, 1, tzinfo=timezone.utc):
        raise ValueError(f"{value:%Y-%m-%d} is outside the plausible range 1971-01-01 to 2100-01-01")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", arbitrary_types_allowed=True)


class RangeSpec(_Spec):
    """A data range: both ends optional, the end after the start."""

    start: datetime | None = None
    end: datetime | None = None

    _window = field_validator("start", "end")(_in_window)

    @model_validator(mode="after")
    def _ordered(self):
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"«end» ({self.end:%Y-%m-%d %H:%M}) must be after «start» ({self.start:%Y-%m-%d %H:%M})")
        return self


class BacktestRequest(RangeSpec):
    """The fields of :class:`mbats.backtest.runner.BacktestSpec` with their allowed ranges."""

    strategy: str = Field(max_length=200)
    instruments: list[Symbol] = Field(min_length=1, max_length=50)
    granularity: str = "H1"
    params: dict[str, Any] = Field(default_factory=dict)
    cash: float = Field(100_000.0, gt=0, le=MAX_CASH)
    commission: float = Field(0.0, ge=0, le=MAX_COMMISSION)
    spread_pips: float = Field(0.0, ge=0, le=MAX_SPREAD_PIPS)
    sizer: str = "fixed:units=10000"
    run_type: str = "backtest"
    sweep_id: str | None = None
    account_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    slippage_pips: float = Field(0.0, ge=0, le=MAX_SPREAD_PIPS)
    max_units: float | None = Field(None, gt=0, le=1e12)
    max_gross_exposure: float | None = Field(None, gt=0, le=1e15)

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, v: str) -> str:
        from mbats.secmaster.granularity import GRANULARITIES

        if v not in GRANULARITIES:
            raise ValueError(f"unknown granularity '{v}'; use one of {', '.join(GRANULARITIES)}")
        return v

    @field_validator("sizer")
    @classmethod
    def _sizer(cls, v: str) -> str:
        from mbats.kernel.sizing import parse_sizer

        try:
            parse_sizer(v)
        except MbatsError as exc:
            raise ValueError(str(exc).removeprefix("--sizer ").removeprefix("--sizer: ")) from None
        return v


BACKTEST_OPTIONS = {"start": "--from", "end": "--to", "cash": "--cash", "commission": "--commission",
                    "spread_pips": "--spread", "sizer": "--sizer", "instruments": "--instrument",
                    "granularity": "--granularity", "strategy": "STRATEGY", "params": "--param",
                    "account_currency": "--account-currency", "slippage_pips": "--slippage",
                    "max_units": "--max-units", "max_gross_exposure": "--max-gross-exposure"}


def check_strategy_params(strategy: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Typed, in-range strategy parameters (unknown names and absurd values are usage errors)."""
    from mbats.kernel.strategies import coerce_params, find_strategy

    return coerce_params(find_strategy(strategy), dict(params))


class SweepOptions(_Spec):
    top: int = Field(5, ge=0, le=1000)
    rank_by: str = "sharpe"
    tolerance: float = Field(0.01, ge=0, le=100)
    workers: int = Field(0, ge=0, le=MAX_WORKERS)

    @field_validator("rank_by")
    @classmethod
    def _metric(cls, v: str) -> str:
        from mbats.risk.metrics import METRIC_DESCRIPTIONS as METRIC_NAMES

        if v not in METRIC_NAMES:
            raise ValueError(f"unknown metric '{v}'; use one of {', '.join(METRIC_NAMES)}")
        return v


SWEEP_OPTIONS = {"top": "--top", "rank_by": "--rank-by", "tolerance": "--tolerance", "workers": "--workers"}


def check_grid(strategy: str, grid: Mapping[str, list], fixed: Mapping[str, Any]) -> None:
    """Every grid value must be a valid, in-range value of a declared parameter of the strategy."""
    from mbats.kernel.strategies import coerce_params, find_strategy

    cls = find_strategy(strategy)
    for name, values in grid.items():
        if name in fixed:
            raise UsageError(f"--grid {name}: also given as a fixed --param; give it once")
        for value in values:
            try:
                coerce_params(cls, {name: value})
            except UsageError as exc:
                raise UsageError(f"--grid {name}: {exc}") from None


class LiveOptions(_Spec):
    mode: str = "paper"
    warmup: int = Field(200, ge=0, le=MAX_WARMUP)
    units: int = Field(10_000, ge=1, le=1_000_000_000)
    bars: int | None = Field(None, ge=1)
    max_units: float | None = Field(None, gt=0)
    max_gross: float | None = Field(None, gt=0)
    max_orders: int | None = Field(None, ge=1)
    max_loss: float | None = Field(None, gt=0)
    webhook: str | None = None
    instruments: list[Symbol] = Field(min_length=1, max_length=50)
    granularity: str = "M1"

    _granularity = field_validator("granularity")(BacktestRequest._granularity.__func__)

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("paper", "live"):
            raise ValueError(f"'{v}' is not paper or live")
        return v

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        from urllib.parse import urlsplit

        if v and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname):
            raise ValueError("must be an http:// or https:// URL")
        return v


LIVE_OPTIONS = {"mode": "--mode", "warmup": "--warmup", "units": "--units", "bars": "--bars",
                "max_units": "--max-units", "max_gross": "--max-gross-exposure", "max_orders": "--max-orders-per-minute",
                "max_loss": "--max-daily-loss", "webhook": "--risk-webhook", "instruments": "--instrument",
                "granularity": "--granularity"}


class DownloadRange(RangeSpec):
    """A download: the start may not lie in the future (there is nothing to fetch there)."""

    @model_validator(mode="after")
    def _not_future(self):
        now = datetime.now(timezone.utc)
        if self.start is not None and self.start > now:
            raise ValueError(f"«start» ({self.start:%Y-%m-%d %H:%M}) is in the future; nothing to download yet")
        return self


def finite(value: float, name: str, low: float | None = None, high: float | None = None) -> float:
    """A single number option in range (for commands without a model of their own)."""
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low:g}" if low is not None else ""
        span += f" to {high:g}" if high is not None else ""
        raise UsageError(f"{name}: must be a finite number {span.strip()} (got {value!r})")
    return value
