"""Finding strategies by name and turning ``--param k=v`` strings into typed values.

A strategy is a plain backtrader ``Strategy`` subclass in a module of the strategies folder
(``MBATS_STRATEGIES_DIR``). It is found by its class name (``SmaCrossover``), its snake-case
name (``sma_crossover``) or, when a module holds one strategy, the module name.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from functools import lru_cache
from pathlib import Path

import backtrader as bt

from mbats.config import get_settings
from mbats.errors import MbatsError, NotFoundError, UsageError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@lru_cache(maxsize=8)
def _discover(folder: str) -> dict[str, type[bt.Strategy]]:
    found: dict[str, type[bt.Strategy]] = {}
    path = Path(folder)
    if not path.is_dir():
        raise NotFoundError(f"strategies folder {path} does not exist; set MBATS_STRATEGIES_DIR")
    for file in sorted(path.glob("*.py")):
        if file.name.startswith("_"):
            continue
        module_name = f"mbats_strategies.{file.stem}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise MbatsError(f"strategy module {file} failed to import: {exc!r}") from None
        own = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and issubclass(obj, bt.Strategy) and obj.__module__ == module_name]
        for cls in own:
            found[cls.__name__.lower()] = cls
            found[snake_case(cls.__name__)] = cls
        if len(own) == 1:
            found.setdefault(file.stem.lower(), own[0])
    return found


def available_strategies() -> list[type[bt.Strategy]]:
    return sorted(set(_discover(str(get_settings().strategies_dir)).values()), key=lambda c: c.__name__)


def find_strategy(name: str) -> type[bt.Strategy]:
    strategies = _discover(str(get_settings().strategies_dir))
    cls = strategies.get(name.lower()) or strategies.get(snake_case(name))
    if cls is None:
        names = ", ".join(snake_case(c.__name__) for c in available_strategies())
        raise NotFoundError(f"unknown strategy '{name}'; available: {names}")
    return cls


def strategy_name(cls: type[bt.Strategy]) -> str:
    return snake_case(cls.__name__)


def declared_params(cls: type[bt.Strategy]) -> dict[str, object]:
    return {name: getattr(cls.params, name) for name in cls.params._getkeys()}


def coerce_value(name: str, raw: object, default: object) -> object:
    """Convert ``raw`` to the type of the declared default ("False" is False, not truthy)."""
    if not isinstance(raw, str):
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(raw, float) and raw.is_integer():
            return int(raw)  # JSON conf and grids may carry 10.0 for an integer period
        return raw
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"parameter {name}: '{raw}' is not a boolean (use true/false)")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"parameter {name}: '{raw}' is not an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"parameter {name}: '{raw}' is not a number") from None
    return text


def coerce_params(cls: type[bt.Strategy], raw: dict[str, object]) -> dict[str, object]:
    """Typed values for the given parameters; unknown names are an error, not silently ignored."""
    declared = declared_params(cls)
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise UsageError(
            f"strategy {strategy_name(cls)} has no parameter(s) {', '.join(unknown)}; "
            f"its parameters: {', '.join(f'{k}={v!r}' for k, v in declared.items())}"
        )
    values = {k: coerce_value(k, v, declared[k]) for k, v in raw.items()}
    for k, v in values.items():
        check_bounds(cls, k, v, declared[k])
    return values


# Without declared bounds a number must be finite, keep the sign of its default (periods and
# thresholds are never negative) and stay below a size no FX strategy needs; a strategy narrows
# this with a class attribute ``param_bounds = {"name": (low, high)}`` (inclusive).
MAX_PARAM = 1_000_000


def param_bounds(cls: type[bt.Strategy], name: str, default: object) -> tuple[float, float] | None:
    declared = getattr(cls, "param_bounds", {}) or {}
    if name in declared:
        return declared[name]
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    if isinstance(default, int):
        return (1 if default >= 1 else 0 if default >= 0 else -MAX_PARAM), MAX_PARAM
    return (0.0 if default >= 0 else -float(MAX_PARAM)), float(MAX_PARAM)


def check_bounds(cls: type[bt.Strategy], name: str, value: object, default: object) -> None:
    """A parameter value outside its sane range is a usage error naming the range."""
    import math

    from mbats.errors import UsageError

    if isinstance(default, bool) and not isinstance(value, bool):
        raise UsageError(f"parameter {name}: {value!r} is not a boolean (use true/false)")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"parameter {name}: {value!r} is not a number")
        if isinstance(default, int) and isinstance(value, float):
            if not value.is_integer():
                raise UsageError(f"parameter {name}: {value!r} is not an integer")
        if not math.isfinite(value):
            raise UsageError(f"parameter {name}: {value!r} is not a finite number")
    bounds = param_bounds(cls, name, default)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise UsageError(f"parameter {name}={value!r} is out of range: allowed {bounds[0]:g} to {bounds[1]:g} "
                         f"for strategy {strategy_name(cls)}")


def parse_param_options(options: list[str]) -> dict[str, str]:
    """``["fast=10", "slow=30"]`` → ``{"fast": "10", "slow": "30"}``."""
    params: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param '{option}': expected name=value")
        params[key.strip()] = value
    return params
