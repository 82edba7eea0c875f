"""Parameter grids, for the CLI and the Airflow DAG alike: ranges and lists → configurations.

``fast=5:50:5`` (inclusive range) or ``slow=20,30,60`` (list) on the command line; the DAG's conf
gives the same as ``{"start", "stop", "step"}`` ranges and value lists. One size rule: a grid the
compiled scoring core models may hold up to :data:`MAX_CONFIGS` configurations; every other
path runs one backtrader (or per-configuration vectorised) run per configuration and stops at
:data:`MAX_BACKTRADER_CONFIGS`.
"""

from __future__ import annotations

import itertools
import math

from mbats.errors import UsageError

MAX_CONFIGS = 100_000            # compiled core: 10,000 configurations ≈ 1 min on 2 cores (bench_sweep_core)
MAX_BACKTRADER_CONFIGS = 1_000   # one run per configuration (and Airflow's max_map_length is 1024)


class GridError(UsageError):
    """A grid (``--grid`` option or DAG conf) could not be read or is too large."""


def _number(text: str, option: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise GridError(f"--grid '{option}': '{text}' is not a number") from None


def range_values(name: str, start, stop, step=1, *, where: str | None = None) -> list:
    """``start, start+step, …, stop`` (stop inclusive); integers stay integers."""
    where = where or f"range for {name!r}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop, step)):
        raise GridError(f"{where}: start, stop and step must be numbers")
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise GridError(f"{where}: start, stop and step must be finite numbers")
    if step <= 0 or stop < start:
        raise GridError(f"{where}: needs start <= stop and a positive step")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_CONFIGS:  # refuse before building the list, not after
        raise GridError(f"{where}: {count:,} values; the limit is {MAX_CONFIGS:,} configurations")
    integral = all(isinstance(v, int) for v in (start, stop, step))
    return [start + i * step if integral else round(start + i * step, 10) for i in range(count)]


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
            numbers = [_number(p, option) for p in parts]
            grid[name] = range_values(name, *numbers, where=f"--grid '{option}'")
        else:
            grid[name] = [v.strip() for v in spec.split(",") if v.strip()]
    if not grid:
        raise GridError("give at least one --grid name=values")
    return grid


def grid_size(grid: dict[str, list]) -> int:
    return math.prod(len(v) for v in grid.values())


def check_size(grid: dict[str, list], limit: int, why: str | None = None) -> int:
    """The number of configurations; a :class:`GridError` naming the limit (and why) above it."""
    size = grid_size(grid)
    if size > limit:
        reason = f" ({why})" if why else ""
        raise GridError(f"the grid has {size:,} configurations; the limit is {limit:,}{reason}")
    return size


def expand_grid(grid: dict[str, list], limit: int = MAX_CONFIGS) -> list[dict]:
    """Every configuration (cartesian product, in grid order), at most ``limit`` of them."""
    check_size(grid, limit)
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def label(params: dict) -> str:
    """A short label of one configuration, e.g. ``fast=5 slow=20`` (Airflow's mapped-task list)."""
    return " ".join(f"{k}={v}" for k, v in params.items())
