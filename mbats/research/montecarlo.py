"""Monte Carlo of a run: how much of its result was the luck of the order its trades came in?

Three ways to draw ``paths`` alternative histories from one run, all seeded (same seed, same
paths):

* ``shuffle`` — the run's closed trades in a random order. The final equity is the same on every
  path (the sum of the P&Ls does not depend on their order); the drawdown distribution shows how
  deep the same trades could have dug.
* ``bootstrap`` — as many trades drawn with replacement: final equity and drawdown both vary.
* ``blocks`` — a block bootstrap of the daily returns of the equity curve (blocks of
  ``block_days`` consecutive FX days, compounded), for runs whose P&L is not just closed trades
  (open positions, financing) or to keep runs of good and bad days together.

Trade paths start from the run's cash and add each trade's net P&L; drawdowns are measured on
those points, in percent below the running peak (positive, as ``compute_metrics`` reports them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mbats.errors import MbatsError, UsageError

METHODS = ("shuffle", "bootstrap", "blocks")
PERCENTILES = (5, 50, 95)
CHUNK_CELLS = 4_000_000        # paths x samples simulated at once (~32 MB of float64)
MAX_PATHS = 1_000_000


@dataclass
class MonteCarloResult:
    method: str
    paths: int
    seed: int
    block_days: int
    samples: int                 # trades or daily returns resampled
    start_cash: float
    final_equity: np.ndarray     # one per path
    max_drawdown_pct: np.ndarray  # one per path, >= 0
    seconds: float

    def percentile(self, metric: str, q: float) -> float:
        return float(np.percentile(getattr(self, metric), q))

    @property
    def prob_loss(self) -> float:
        return float(np.mean(self.final_equity < self.start_cash))

    def summary(self) -> dict[str, float]:
        """p5/p50/p95 of final equity and max drawdown, and the share of losing paths."""
        out = {f"{m}_p{q}": self.percentile(m, q) for m in ("final_equity", "max_drawdown_pct") for q in PERCENTILES}
        out["prob_loss"] = self.prob_loss
        return out

    def percentiles(self) -> dict[str, dict[int, float]]:
        qs = np.arange(1, 100)
        return {m: dict(zip(qs.tolist(), np.percentile(getattr(self, m), qs).tolist()))
                for m in ("final_equity", "max_drawdown_pct")}


def _max_drawdown_pct(values: np.ndarray) -> np.ndarray:
    """Per row of ``values`` (paths x points): the deepest fall below the running peak, in percent."""
    peak = np.maximum.accumulate(values, axis=1)
    return -100.0 * (values / peak - 1.0).min(axis=1)


def _check(paths: int, method: str) -> None:
    if method not in METHODS:
        raise UsageError(f"Monte Carlo method '{method}': use one of {', '.join(METHODS)}")
    if not 1 <= paths <= MAX_PATHS:
        raise UsageError(f"--paths: must be from 1 to {MAX_PATHS} (got {paths})")


def _chunks(paths: int, samples: int):
    step = max(1, CHUNK_CELLS // max(samples, 1))
    for first in range(0, paths, step):
        yield min(step, paths - first)


def simulate_trades(pnl: np.ndarray | list[float], start_cash: float, paths: int = 1000, seed: int = 1,
                    method: str = "shuffle") -> MonteCarloResult:
    """Paths of the account made of the trades' net P&Ls, reordered (shuffle) or redrawn (bootstrap)."""
    _check(paths, method)
    if method == "blocks":
        raise UsageError("the blocks method resamples daily returns: use simulate_returns")
    pnl = np.asarray(pnl, dtype=np.float64)
    if len(pnl) == 0:
        raise MbatsError("the run has no closed trades to resample")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    finals, drawdowns = [], []
    for count in _chunks(paths, len(pnl)):
        if method == "shuffle":
            drawn = rng.permuted(np.broadcast_to(pnl, (count, len(pnl))), axis=1)
        else:
            drawn = pnl[rng.integers(0, len(pnl), size=(count, len(pnl)))]
        values = start_cash + np.concatenate([np.zeros((count, 1)), np.cumsum(drawn, axis=1)], axis=1)
        finals.append(values[:, -1])
        drawdowns.append(_max_drawdown_pct(values))
    return MonteCarloResult(method, paths, seed, 0, len(pnl), float(start_cash), np.concatenate(finals),
                            np.concatenate(drawdowns), time.perf_counter() - started)


def simulate_returns(daily_returns: np.ndarray | list[float], start_cash: float, paths: int = 1000, seed: int = 1,
                     block_days: int = 5) -> MonteCarloResult:
    """Paths compounded from blocks of ``block_days`` consecutive daily returns drawn with replacement
    (the moving-block bootstrap), cut to the original number of days."""
    _check(paths, "blocks")
    returns = np.asarray(daily_returns, dtype=np.float64)
    n = len(returns)
    if n == 0:
        raise MbatsError("the run has no daily returns to resample (it spans less than two FX days)")
    if not 1 <= block_days <= n:
        raise UsageError(f"--block-days: must be from 1 to the run's {n} daily returns (got {block_days})")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    blocks = -(-n // block_days)
    offsets = np.arange(block_days)
    finals, drawdowns = [], []
    for count in _chunks(paths, n):
        starts = rng.integers(0, n - block_days + 1, size=(count, blocks))
        drawn = returns[(starts[:, :, None] + offsets).reshape(count, -1)[:, :n]]
        values = start_cash * np.concatenate([np.ones((count, 1)), np.cumprod(1.0 + drawn, axis=1)], axis=1)
        finals.append(values[:, -1])
        drawdowns.append(_max_drawdown_pct(values))
    return MonteCarloResult("blocks", paths, seed, block_days, n, float(start_cash), np.concatenate(finals),
                            np.concatenate(drawdowns), time.perf_counter() - started)


def simulate_run(trades: pd.DataFrame, equity: pd.Series, start_cash: float, paths: int = 1000, seed: int = 1,
                 method: str = "shuffle", block_days: int = 5) -> MonteCarloResult:
    """Monte Carlo of one run from its trades (closed ones) or its equity curve (``blocks``)."""
    _check(paths, method)
    if method == "blocks":
        from mbats.risk.metrics import fx_daily

        daily = fx_daily(equity.astype("float64"))
        returns = daily.pct_change().dropna().to_numpy()
        return simulate_returns(returns, start_cash, paths, seed, block_days)
    closed = trades[~trades["is_open"].astype(bool)] if len(trades) else trades
    pnl = closed["pnl_net"].to_numpy(dtype=np.float64) if len(closed) else np.array([])
    return simulate_trades(pnl, start_cash, paths, seed, method)
