"""Parameter grids: ``fast=5:50:5`` (inclusive range) or ``slow=20,30,60`` (list) → configurations."""

from __future__ import annotations

import itertools
import math

from mbats.errors import UsageError

MAX_CONFIGS = 1000


class GridError(UsageError):
    """A --grid option could not be read."""


def _number(text: str, option: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise GridError(f"--grid '{option}': '{text}' is not a number") from None


def parse_grid(options: list[str]) -> dict[str, list]:
    """``["fast=5:50:5", "slow=20,30", "allow_short=true"]`` → ``{"fast": [5, 10, …], …}``."""
    grid: dict[str, list] = {}
    for option in options:
        name, sep, spec = option.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise GridError(f"--grid '{option}': expected name=start:stop[:step] or name=v1,v2,…")
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) not in (2, 3):
                raise GridError(f"--grid '{option}': a range is start:stop or start:stop:step")
            start, stop = _number(parts[0], option), _number(parts[1], option)
            step = _number(parts[2], option) if len(parts) == 3 else 1
            if step <= 0 or stop < start:
                raise GridError(f"--grid '{option}': needs start <= stop and a positive step")
            if not all(math.isfinite(v) for v in (start, stop, step)):
                raise GridError(f"--grid '{option}': start, stop and step must be finite numbers")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            if count > MAX_CONFIGS:  # refuse before building the list, not after
                raise GridError(f"--grid '{option}': {count:,} values; the limit is {MAX_CONFIGS} configurations")
            integral = all(isinstance(v, int) for v in (start, stop, step))
            grid[name] = [start + i * step if integral else round(start + i * step, 10) for i in range(count)]
        else:
            grid[name] = [v.strip() for v in spec.split(",") if v.strip()]
    if not grid:
        raise GridError("give at least one --grid name=values")
    return grid


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """Every configuration (cartesian product, in grid order)."""
    names = list(grid)
    configs = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    if len(configs) > MAX_CONFIGS:
        raise GridError(f"the grid has {len(configs)} configurations; the limit is {MAX_CONFIGS}")
    return configs
