"""The sweep scoring core: a whole grid of a signal strategy scored on numpy columns.

One call scores every configuration of a grid over one instrument's bars:

* each distinct indicator is computed once per grid (an SMA per distinct period, exact like
  backtrader's ``math.fsum`` window) and shared by every configuration; a grid with more distinct
  periods than fit in ``SMA_MATRIX_BYTES`` (32 MB: ten periods of a year of minutes) has each
  configuration compute its two SMAs inside its crossover loop instead (exact integer sums, as
  fast on this machine and ~55 MB lighter for the 100-configuration benchmark grid);
* signals become target positions, filled at the next bar's open with half the spread and the
  commission per fill, reversals and exits as :class:`~mbats.kernel.signals.SignalStrategy`
  trades them;
* equity is followed bar by bar for drawdowns, exposure and the daily values the return ratios
  need; the ranking metrics come out as ``compute_metrics`` would compute them;
* trades stay columnar (numpy arrays, one slice per configuration); the fingerprint hashes those
  arrays directly (:mod:`mbats.kernel.trades`) and rows are built only on request
  (:meth:`GridScores.trades_frame`).

A sweep is planned, then scored: :func:`plan_grid` reads the strategy class and the specs
(backtrader, settings) into a :class:`GridPlan` of plain values; :func:`score_plan` scores it
loading only numpy, pandas and the kernels (no backtrader, scipy/empyrical, scikit-learn, MLflow
or pydantic: the return ratios are empyrical's formulas in numpy), which keeps the sweep's peak
memory within its budget. :func:`score_grid` does both.

Two engines give the same results bit for bit: ``numba`` (compiled kernels in
:mod:`mbats.research.kernels`, configurations spread over threads with ``prange``) and
``numpy`` (the fallback, one configuration at a time, used when numba is missing or
``MBATS_COMPILED_CORE=false``). Compiled code is cached under ``.cache/numba/kernels-<digest of the
sources>`` (``NUMBA_CACHE_DIR`` when not set), so only the first run on a machine pays the compile.

How a strategy gets the compiled signals: a :class:`SignalStrategy` declares them with a class
attribute, e.g. ``compiled_signals = SmaCross(fast="fast", slow="slow", allow_short="allow_short")``
naming the parameters that feed the kernel. A signal strategy without that attribute still gets the
compiled fills and metrics, but its pandas ``signals()`` runs once per configuration (slower, and
said in the sweep's notes). A backtrader strategy trading stop-loss/take-profit brackets declares
``compiled_signals = RsiAtrBrackets(...)`` (``strategies/rsi_atr.py``): the core computes each RSI and ATR
once per grid and simulates backtrader's bracket fills (:mod:`mbats.research.brackets` has the rules:
children active from the bar after the entry, the stop checked before the target, gaps filled at the
open). A grid the core cannot model (several instruments, a sizer other than
``fixed``) is scored per configuration by :func:`~mbats.research.vectorised.vector_simulate`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

# Only light modules here (numpy, pandas, the kernels): scoring a grid must not load backtrader,
# scipy/empyrical, scikit-learn or MLflow (~200 MB; tests/research/test_core_imports.py checks it).
# plan_grid, which reads a backtrader strategy class, imports what it needs when called.
from mbats.errors import MbatsError
from mbats.kernel.indicators import RsiAtrBrackets, SmaCross, _exact_window_sums, crossover, hold_targets
from mbats.kernel.trades import NAT, TRADE_COLUMNS, fingerprint_arrays
from mbats.research import brackets as bracket_rules
from mbats.risk import metrics as risk_metrics

if TYPE_CHECKING:
    from mbats.backtest.runner import BacktestSpec

log = logging.getLogger(__name__)

NUMBA_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "numba"   # git-ignored (.cache/)
CHUNK = 8                                             # configurations whose trades and targets are held at once (~5 MB)
SMA_MATRIX_BYTES = 32 << 20      # above this, SMAs are recomputed per configuration (as fast: bench/RESULTS.md)

Progress = Callable[[str, int, int], None]


# --- engine ---------------------------------------------------------------------------------------

def _cache_dir() -> Path:
    """``.cache/numba`` in the checkout, or under MBATS_HOME where the package folder is read-only."""
    def home_cache() -> Path:
        from mbats.config import get_settings

        return get_settings().home / "cache" / "numba"

    for make in (lambda: NUMBA_CACHE_DIR, home_cache):
        folder = make()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return NUMBA_CACHE_DIR


def _kernels(enabled: bool | None = None):
    """The numba kernels, or None (numba missing, switched off, or failing to load).

    ``enabled``: None reads ``MBATS_COMPILED_CORE`` from the settings.
    """
    if enabled is None:
        from mbats.config import get_settings

        enabled = get_settings().compiled_core
    if not enabled:
        return None
    if "NUMBA_CACHE_DIR" not in os.environ:      # read by numba when it is first imported
        # one folder per version of the kernels' sources: numba re-checks only the file of the function it
        # loads, so kernels cached with an older mbats.research.brackets compiled in would be used otherwise
        os.environ["NUMBA_CACHE_DIR"] = str(_cache_dir() / f"kernels-{_sources_digest()}")
    try:
        from mbats.research import kernels
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - e.g. an unusable cache folder: score with numpy instead
        log.warning("numba kernels unavailable (%s); using the numpy engine", exc)
        return None
    return kernels


def _return_freed_arrays() -> None:
    """Have glibc serve every block of 1 MB or more from mmap, so freed arrays go back to the OS.

    glibc otherwise raises its mmap threshold to the largest block freed so far (up to 32 MB): after
    the bars are built, the core's 3 MB columns, SMA rows and trade chunks land in the heap and stay
    there once freed. Fixing the threshold keeps the sweep's resident memory at what is in use
    (bench_sweep_core: ~90 MB less after scoring). Elsewhere (no glibc) this does nothing.
    """
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)   # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_return_freed_arrays()   # on import: a sweep loads its bars after importing the core


def engine_name() -> str:
    """``numba`` when the compiled kernels are available and enabled, else ``numpy``."""
    return "numba" if _kernels() is not None else "numpy"


@functools.cache   # the sources of this process's kernels: read once, not on every grid scored
def _sources_digest() -> str:
    """Digest of the compiled sources: the kernels and the bracket rules they compile."""
    source = Path(__file__).with_name("kernels.py").read_bytes() + Path(bracket_rules.__file__).read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def _ready_stamp() -> Path:
    import numba

    digest = hashlib.sha256((_sources_digest() + numba.__version__).encode()).hexdigest()[:16]
    return Path(os.environ.get("NUMBA_CACHE_DIR", NUMBA_CACHE_DIR)) / f"mbats-kernels-{digest}.ready"


def _set_threads(threads: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


# --- what the core can model ----------------------------------------------------------------------

def unsupported(cls: type, specs: list[BacktestSpec]) -> str | None:
    """Why the core cannot score this grid (None: it can)."""
    from mbats.kernel.signals import has_brackets, has_signals
    from mbats.kernel.strategies import strategy_name
    from mbats.research.vectorised import fixed_units

    if not has_signals(cls) and not has_brackets(cls):
        return f"strategy {strategy_name(cls)} declares no vectorised signals"
    base = specs[0]
    if len(base.instruments) != 1:
        return f"the scoring core models one instrument per grid, not {len(base.instruments)}"
    try:
        fixed_units(base.sizer)
    except MbatsError as exc:
        return str(exc)
    account = getattr(base, "account_currency", None)
    quote = base.instruments[0].rpartition("_")[2]
    if account and quote and account != quote:
        return f"P&L of {base.instruments[0]} must be converted from {quote} into {account}; the core books in {quote}"
    return None


def _day_last(index: pd.DatetimeIndex, step: int = 1 << 16) -> np.ndarray:
    """Each FX day's last bar, with the day boundaries ``compute_metrics`` uses.

    Labelled a slice at a time: the time-zone conversion makes several copies of what it is given,
    ~18 MB at once for a year of minutes, more than the rest of the scoring's peak.
    """
    days = np.empty(len(index), np.int64)
    for lo in range(0, len(index), step):
        days[lo:lo + step] = risk_metrics.fx_day_labels(index[lo:lo + step])
    return np.flatnonzero(np.append(days[1:] != days[:-1], True)).astype(np.int64) if len(days) else \
        np.empty(0, np.int64)


@dataclass
class _Market:
    """One instrument's columns, shared by every configuration of the grid."""

    symbol: str
    index: pd.DatetimeIndex
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    times_ns: np.ndarray      # for drawdown durations and trade timestamps
    day_last: np.ndarray      # index of each day's last bar (the daily equity the ratios use)

    @classmethod
    def of(cls, symbol: str, frame: pd.DataFrame) -> _Market:
        index = pd.DatetimeIndex(frame.index)
        return cls(symbol, index, _column(frame, "open"), _column(frame, "high"), _column(frame, "low"),
                   _column(frame, "close"), index.as_unit("ns").asi8, _day_last(index))

    def micros(self, bars: np.ndarray) -> np.ndarray:
        """Timestamps of some bars in microseconds, as backtrader records trades."""
        return self.times_ns[bars] // 1000


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A price column as float64 without a copy where the frame already holds one.

    pandas hands out read-only views; the kernels only read prices, but numba compiles read-only
    arrays as another type, so the view is marked writable (one kernel signature, 3 MB saved per
    column). A column of another dtype or layout is copied.
    """
    values = np.ascontiguousarray(frame[name].to_numpy(np.float64))
    if not values.flags.writeable:
        values = values.view()
        try:
            values.flags.writeable = True
        except ValueError:
            values = values.copy()
    return values


# --- results --------------------------------------------------------------------------------------

@dataclass
class ColumnarTrades:
    """Trades of many configurations as columns; configuration c owns rows offsets[c]:offsets[c+1].

    Per configuration the rows are in entry order, closed trades first and at most one open trade
    (exit_bar -1, NaN exit/P&L) last.
    """

    offsets: np.ndarray
    entry_bar: np.ndarray
    exit_bar: np.ndarray
    side: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    pnl: np.ndarray
    pnl_net: np.ndarray
    commission: np.ndarray

    @classmethod
    def empty(cls, counts: np.ndarray) -> ColumnarTrades:
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        total = int(offsets[-1])
        f = lambda: np.empty(total, np.float64)  # noqa: E731
        return cls(offsets, np.empty(total, np.int64), np.empty(total, np.int64), np.empty(total, np.int8),
                   f(), f(), f(), f(), f())

    def rows(self, c: int) -> slice:
        return slice(int(self.offsets[c]), int(self.offsets[c + 1]))


@dataclass
class GridScores:
    """Metrics, trade counts and fingerprints of every configuration (in the grid's order)."""

    engine: str
    params: list[dict[str, object]]
    metrics: list[dict[str, float | None]]
    trades: list[int]                      # closed trades
    fingerprints: list[str]
    seconds: float
    notes: list[str] = field(default_factory=list)
    _columns: dict[int, tuple[_Market, int, ColumnarTrades, int]] = field(default_factory=dict, repr=False)

    def trades_frame(self, config: int) -> pd.DataFrame:
        """Rows of one configuration's trades (kept=True only), in the backtest's trade columns."""
        if config not in self._columns:
            raise MbatsError(f"configuration {config}: trades were not kept (score_grid(keep=...))")
        market, units, columns, c = self._columns[config]
        return _trades_frame(market, units, columns, c)


# --- the numpy engine (fallback): one configuration at a time, same operations as the kernels ----

def _sma_matrix_numpy(closes: np.ndarray, periods: np.ndarray) -> np.ndarray:
    return np.stack([_exact_window_sums(closes, int(p)) / int(p) for p in periods]) if len(periods) else \
        np.empty((0, len(closes)))


def _simulate_numpy(m: _Market, target: np.ndarray, units: int, half_spread: float, rate: float, cash0: float,
                    columns: ColumnarTrades, c: int, daily: np.ndarray, stats: np.ndarray) -> None:
    n = len(m.opens)
    pos = np.concatenate(([0], target[:-1])).astype(np.int64)
    changes = np.flatnonzero(pos[1:] != pos[:-1]) + 1
    old, new = pos[changes - 1], pos[changes]
    price = m.opens[changes]
    comm = units * (half_spread + price * rate)
    flow = (np.where(old != 0, -(-old * units) * price - comm, 0.0)
            + np.where(new != 0, -(new * units) * price - comm, 0.0))
    cash_flow = np.zeros(n)
    np.add.at(cash_flow, changes, flow)
    value = (cash0 + np.cumsum(cash_flow)) + (0.0 + (pos * units) * m.closes)

    entries = np.flatnonzero(new != 0)
    rows = columns.rows(c)
    closed = entries[entries + 1 < len(changes)]
    k = len(closed)
    e_bar = changes[entries]
    side = new[entries]
    size = side * units
    out = lambda name: getattr(columns, name)[rows]  # noqa: E731
    out("entry_bar")[:] = e_bar
    out("side")[:] = side
    out("entry_price")[:] = (size * m.opens[e_bar]) / size
    for name in ("exit_price", "pnl", "pnl_net", "commission"):
        out(name)[:] = np.nan
    out("exit_bar")[:] = -1
    if k:
        x_bar = changes[closed + 1]
        entry = out("entry_price")[:k]
        pnl = (-(-size[:k])) * (m.opens[x_bar] - entry) * 1.0
        commission = (0.0 + comm[closed]) + comm[closed + 1]
        out("exit_bar")[:k] = x_bar
        out("exit_price")[:k] = entry + side[:k].astype(np.float64) * pnl / units
        out("pnl")[:k] = pnl
        out("commission")[:k] = commission
        out("pnl_net")[:k] = pnl - commission

    peak = np.maximum.accumulate(value)
    peaks = np.flatnonzero(value >= peak)
    ends = np.append(peaks[1:], n - 1)
    underwater = ends - peaks > (np.arange(len(peaks)) < len(peaks) - 1)
    longest = (m.times_ns[ends[underwater]] - m.times_ns[peaks[underwater]]).max() if underwater.any() else -1
    daily[:] = value[m.day_last]
    stats[:] = (value[0], value[-1], (100.0 * (value / peak - 1.0)).min(), float(longest),
                float(np.count_nonzero(pos)), float(k))


def _count_numpy(targets: np.ndarray, counts: np.ndarray) -> None:
    for c, target in enumerate(targets):
        pos = np.concatenate(([0], target[:-1]))
        changes = np.flatnonzero(pos[1:] != pos[:-1]) + 1
        counts[c] = np.count_nonzero(pos[changes])


# --- metrics, shared by both engines --------------------------------------------------------------

def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _return_ratios(returns: np.ndarray, year: float) -> dict[str, np.ndarray]:
    """empyrical's annual return, volatility, Sharpe, Sortino and Calmar, per column of daily returns.

    The same formulas as the empyrical calls in :func:`~mbats.risk.metrics.compute_metrics` (the
    tests hold them to 1e-9), in numpy: importing empyrical loads scipy (~70 MB), a third of the
    sweep's memory budget. Daily values here are never NaN, so empyrical's nan-aware reductions
    reduce to the plain ones.
    """
    days = returns.shape[0]
    annual = np.prod(returns + 1.0, axis=0) ** (1.0 / (days / year)) - 1.0
    std = np.std(returns, ddof=1, axis=0)
    mean = np.mean(returns, axis=0)
    flat = (returns.max(axis=0) == returns.min(axis=0)) & np.isfinite(std)   # empyrical: zero, not a 1e-18 residue
    downside = np.sqrt(np.mean(np.square(np.minimum(returns, 0.0)), axis=0)) * np.sqrt(year)
    curve = np.vstack((np.full((1, returns.shape[1]), 100.0), 100.0 * np.cumprod(returns + 1.0, axis=0)))
    peak = np.fmax.accumulate(curve, axis=0)
    max_dd = ((curve - peak) / peak).min(axis=0)
    calmar = np.where(max_dd < 0, annual / np.abs(max_dd), np.nan)
    return {
        "annual_return_pct": 100.0 * annual,
        "annual_volatility_pct": 100.0 * std * year ** 0.5,
        "sharpe": mean / np.where(flat, 0.0, std) * np.sqrt(year),
        "sortino": (mean * year) / downside,
        "calmar": np.where(np.isinf(calmar), np.nan, calmar),
    }


def _grid_metrics(stats: np.ndarray, daily: np.ndarray, columns: ColumnarTrades, bars: int) -> list[dict]:
    """``compute_metrics`` for every configuration at once (return ratios vectorised over columns)."""
    returns = (daily[:, 1:] / daily[:, :-1] - 1.0).T          # days-1 x configurations, like pct_change
    ratios: dict[str, np.ndarray] = {}
    year = float(getattr(risk_metrics, "_FX_YEAR", {}).get("annualization", 252))   # compute_metrics' annualisation
    if returns.shape[0] >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = _return_ratios(returns, year)
            cutoff = int((returns.shape[0] - 1) * 0.05)
            ratios["var_95_1d_pct"] = -100.0 * np.percentile(returns, 5.0, axis=0)
            ratios["cvar_95_1d_pct"] = -100.0 * np.partition(returns, cutoff, axis=0)[:cutoff + 1].mean(axis=0)
    out = []
    for c in range(stats.shape[0]):
        start, end, dd_min, longest, in_market, closed = stats[c]
        m: dict[str, float | None] = {"total_return_pct": 100.0 * (end / start - 1.0), "final_value": float(end)}
        for key in ("annual_return_pct", "annual_volatility_pct", "sharpe", "sortino", "calmar", "var_95_1d_pct",
                    "cvar_95_1d_pct"):
            m[key] = _finite(ratios[key][c]) if ratios else None
        m["max_drawdown_pct"] = float(-dd_min)
        m["max_drawdown_days"] = float(longest) / 1e9 / 86400.0 if longest >= 0 else 0.0
        pnl = columns.pnl_net[columns.rows(c)][:int(closed)]
        m["trades"] = float(len(pnl))
        if len(pnl):
            wins, losses = pnl[pnl > 0], pnl[pnl < 0]
            m["win_rate_pct"] = 100.0 * len(wins) / len(pnl)
            m["profit_factor"] = _finite(wins.sum() / -losses.sum()) if len(losses) else None
            m["expectancy"] = float(pnl.mean())
            std = pnl.std(ddof=1) if len(pnl) > 1 else 0.0
            m["sqn"] = float(math.sqrt(len(pnl)) * pnl.mean() / std) if std > 0 else None
        else:
            m.update(win_rate_pct=None, profit_factor=None, expectancy=None, sqn=None)
        m["exposure_pct"] = 100.0 * in_market / bars if bars else 0.0
        out.append(m)
    return out


def _fingerprint(market: _Market, units: int, columns: ColumnarTrades, c: int) -> str:
    rows = columns.rows(c)
    x_bar = columns.exit_bar[rows]
    n = len(x_bar)
    return fingerprint_arrays([market.symbol], np.zeros(n, np.int32), columns.side[rows], np.full(n, float(units)),
                              market.micros(columns.entry_bar[rows]), columns.entry_price[rows],
                              np.where(x_bar >= 0, market.micros(x_bar), NAT), columns.exit_price[rows],
                              columns.pnl_net[rows])


def _trades_frame(m: _Market, units: int, columns: ColumnarTrades, c: int) -> pd.DataFrame:
    """Rows with the values :func:`~mbats.research.vectorised.vector_simulate` gives."""
    rows = columns.rows(c)
    e_bar, x_bar, side = columns.entry_bar[rows], columns.exit_bar[rows], columns.side[rows].astype(np.int64)
    entry, exit_price = columns.entry_price[rows], columns.exit_price[rows]
    is_open = x_bar < 0
    stamps = m.index.as_unit("us")
    sign = side.astype(np.float64)
    closed = ~is_open
    best = np.full(len(e_bar), np.nan)
    worst = np.full(len(e_bar), np.nan)
    if closed.any():
        bounds = np.ravel(np.column_stack((e_bar[closed], x_bar[closed])))
        seg_high = np.maximum.reduceat(m.highs, bounds)[::2]
        seg_low = np.minimum.reduceat(m.lows, bounds)[::2]
        s, en = side[closed], entry[closed]
        best[closed] = np.where(s > 0, np.maximum(en, seg_high), np.minimum(en, seg_low))
        worst[closed] = np.where(s > 0, np.minimum(en, seg_low), np.maximum(en, seg_high))
    up, down = (best - entry) * sign, (worst - entry) * sign
    frame = pd.DataFrame({
        "trade_ref": [str(i + 1) for i in range(len(e_bar))],
        "instrument": m.symbol,
        "direction": np.where(side > 0, "long", "short"),
        "size": np.full(len(e_bar), units),
        "entry_ts": stamps[e_bar],
        "entry_price": entry,
        "exit_ts": pd.DatetimeIndex(np.where(is_open, stamps[0], stamps[np.maximum(x_bar, 0)])).where(~is_open),
        "exit_price": exit_price,
        "pnl": columns.pnl[rows],
        "pnl_net": columns.pnl_net[rows],
        "commission": columns.commission[rows],
        "return_pct": 100.0 * sign * (exit_price / entry - 1.0),
        "mfe_pct": np.where(closed, 100.0 * np.where(up >= 0.0, up, 0.0) / entry, np.nan),
        "mae_pct": np.where(closed, 100.0 * np.where(down <= 0.0, down, 0.0) / entry, np.nan),
        "bars_held": np.where(closed, (x_bar - e_bar).astype(np.float64), np.nan),
        "is_open": is_open,
    })
    return frame[TRADE_COLUMNS]


# --- the grid -------------------------------------------------------------------------------------

def _mark_compiled(kernels, progress: Progress | None, message: str) -> None:
    """Stamp the kernels as compiled and cached: later runs load them and say nothing."""
    if kernels is None:
        return
    stamp = _ready_stamp()
    if not stamp.exists():
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        if progress and message:
            progress(message, 1, 1)


def _periods_and_targets(decl: SmaCross | None, params: list[dict]):
    if decl is None:
        return None
    fast = np.array([int(p[decl.fast]) for p in params], np.int64)
    slow = np.array([int(p[decl.slow]) for p in params], np.int64)
    if (fast < 1).any() or (slow < 1).any():
        raise MbatsError(f"{decl.fast} and {decl.slow} must be periods of 1 bar or more")
    periods = np.unique(np.concatenate((fast, slow)))
    allow_short = np.array([bool(p[decl.allow_short]) for p in params])
    return periods, np.searchsorted(periods, fast), np.searchsorted(periods, slow), allow_short


def _exact_ints(closes: np.ndarray, longest: int) -> tuple[np.ndarray, float] | None:
    """Prices as integers on one binary scale (exact) for :func:`kernels.exact_sma`, or None when
    they do not fit (prices spanning more than a factor of 2**9, windows of 2**21 bars or more)."""
    mant, expo = np.frexp(closes)
    lowest = int(expo.min())
    if 53 + int(expo.max()) - lowest > 62 or longest >= 1 << 21 or lowest - 53 < -1000:
        return None
    expo -= lowest                        # in place: a year of minutes is 3 MB per column
    mant *= 2.0**53
    ints = mant.astype(np.int64)
    del mant
    np.left_shift(ints, expo, out=ints)
    return ints, 2.0 ** (lowest - 53)


@dataclass(frozen=True)
class GridPlan:
    """A grid as plain values: all :func:`score_plan` needs (no strategy class, no backtrader)."""

    symbol: str
    params: list[dict]                  # every configuration's full parameters (defaults filled in)
    labels: list[dict]                  # the parameters each spec set (GridScores.params)
    units: int
    half_spread: float                  # half the spread plus any slippage per unit, as backtrader books it
    commission: float
    cash: float
    sma: SmaCross | None = None         # compiled signals: the parameters that feed the SMA kernel
    signals: Callable | None = None     # otherwise the strategy's pandas signals(frame, **params)
    brackets: RsiAtrBrackets | None = None   # a bracket strategy (no signals(); mbats.research.brackets)
    strategy: str = ""
    compiled: bool = True               # use the numba kernels when they load


def plan_grid(cls: type, specs: list[BacktestSpec]) -> GridPlan:
    """The plan of one grid (same instrument, costs and sizer; params vary) of a signal strategy.

    Raises :class:`MbatsError` for a grid the core cannot model (see :func:`unsupported`).
    """
    if not specs:
        raise MbatsError("the grid has no configurations")
    why = unsupported(cls, specs)
    if why:
        raise MbatsError(why)
    from mbats.config import get_settings
    from mbats.kernel.costs import fill_cost_per_unit
    from mbats.kernel.strategies import strategy_name
    from mbats.research.vectorised import fixed_units

    base = specs[0]
    symbol = base.instruments[0]
    defaults = {k: getattr(cls.params, k) for k in cls.params._getkeys()}
    decl = getattr(cls, "compiled_signals", None)
    return GridPlan(symbol, [defaults | dict(s.params) for s in specs], [dict(s.params) for s in specs],
                    fixed_units(base.sizer), fill_cost_per_unit(base, symbol), base.commission, float(base.cash),
                    sma=decl if isinstance(decl, SmaCross) else None,
                    signals=None if isinstance(decl, (SmaCross, RsiAtrBrackets)) else cls.signals,
                    brackets=decl if isinstance(decl, RsiAtrBrackets) else None,
                    strategy=strategy_name(cls), compiled=get_settings().compiled_core)


def score_grid(cls: type, specs: list[BacktestSpec], bars: dict[str, pd.DataFrame], threads: int = 1,
               keep: set[int] | None = None, progress: Progress | None = None) -> GridScores:
    """Score every spec (one grid: same instrument, costs and sizer; params vary) in this process.

    ``threads``: numba threads (configurations in parallel). ``keep``: configurations whose
    columnar trades are kept for :meth:`GridScores.trades_frame`. Raises :class:`MbatsError` for a
    grid the core cannot model (see :func:`unsupported`).
    """
    started = time.perf_counter()
    plan = plan_grid(cls, specs)
    return score_plan(plan, bars, threads, keep, progress, started)


def score_plan(plan: GridPlan, bars: dict[str, pd.DataFrame], threads: int = 1, keep: set[int] | None = None,
               progress: Progress | None = None, started: float | None = None) -> GridScores:
    """Score a planned grid over ``bars[plan.symbol]`` (a frame with open/high/low/close on a UTC index).

    Loads only numpy, pandas and the kernels: this is the part of a sweep whose memory counts.
    """
    started = time.perf_counter() if started is None else started
    symbol = plan.symbol
    if symbol not in bars or not len(bars[symbol]):
        raise MbatsError(f"no bars for {symbol} in the requested range")
    market = _Market.of(symbol, bars[symbol])
    if not (np.isfinite(market.opens).all() and np.isfinite(market.closes).all()):
        raise MbatsError(f"{symbol}: open and close prices must be finite numbers")
    units, half_spread, params = plan.units, plan.half_spread, plan.params
    notes: list[str] = []
    message = ""      # the one-time compiling notice, if this run compiles
    kernels = _kernels(plan.compiled)
    engine = "numba" if kernels is not None else "numpy"
    if kernels is None:
        notes.append("numba unavailable or MBATS_COMPILED_CORE=false: scored by the numpy engine")
    else:
        _set_threads(threads)
        stamp = _ready_stamp()
        if not stamp.exists():
            message = f"compiling the scoring core (first run only; cached in {stamp.parent})"
            log.warning(message)
            notes.append(message)
            if progress:
                progress(message, 0, 1)

    if plan.brackets is not None:
        scores = _score_brackets(plan, market, kernels, engine, notes, keep or set(), progress)
        _mark_compiled(kernels, progress, message)
        scores.seconds = time.perf_counter() - started
        return scores

    sma = _periods_and_targets(plan.sma, params)
    if sma is None:
        notes.append(f"{plan.strategy} declares no compiled_signals: its pandas signals() runs once per "
                     "configuration; fills and metrics are compiled")
    n, total = len(market.opens), len(params)
    smas, exact = None, None
    if sma is not None:
        periods = sma[0]
        exact = _exact_ints(market.closes, int(periods.max())) if kernels is not None else None
        if exact is not None and len(periods) * n * 8 > SMA_MATRIX_BYTES:
            smas = np.empty((0, n))     # too many to hold: each configuration recomputes its two SMAs
            notes.append(f"{len(periods)} distinct SMA periods would take {len(periods) * n * 8 >> 20} MB, over the "
                         f"{SMA_MATRIX_BYTES >> 20} MB budget: each configuration recomputes its two (exact) SMAs")
        elif exact is not None:
            smas = np.empty((len(periods), n))
            kernels.sma_matrix(exact[0], periods, exact[1], smas)
        else:
            smas = _sma_matrix_numpy(market.closes, periods)
            exact = (np.zeros(n, np.int64), 1.0)   # unused: the matrix holds every SMA

    keep = keep or set()
    hashers = ThreadPoolExecutor(max(1, threads))
    scores = GridScores(engine, plan.labels, [], [], [], 0.0, notes)
    for lo in range(0, total, CHUNK):
        hi = min(lo + CHUNK, total)
        counts = np.zeros(hi - lo, np.int64)
        targets = None
        if sma is not None and kernels is not None:
            selected = (smas, exact[0], exact[1], sma[0], sma[1][lo:hi], sma[2][lo:hi], sma[3][lo:hi])
            if len(smas):       # targets made on the fly from the shared SMAs, never stored
                kernels.sma_count_grid(*selected, counts)
            else:               # SMAs recomputed per configuration: once, targets kept for the chunk
                targets = np.empty((hi - lo, n), np.int8)
                kernels.sma_targets_grid(*selected, targets)
                kernels.count_trades(targets, counts)
        else:
            targets = np.zeros((hi - lo, n), np.int8)
            for c in range(lo, hi):
                if sma is not None:
                    cross = crossover(pd.Series(smas[sma[1][c]]), pd.Series(smas[sma[2][c]]))
                    targets[c - lo] = hold_targets(cross, bool(sma[3][c])).to_numpy()
                else:
                    targets[c - lo] = np.asarray(plan.signals(bars[symbol], **params[c]), dtype=np.int8)
            (kernels.count_trades if kernels is not None else _count_numpy)(targets, counts)
        columns = ColumnarTrades.empty(counts)
        daily = np.empty((hi - lo, len(market.day_last)))
        stats = np.empty((hi - lo, 6))
        rules = (units, half_spread, plan.commission, plan.cash, market.day_last, market.times_ns,
                 columns.offsets, columns.entry_bar, columns.exit_bar, columns.side, columns.entry_price,
                 columns.exit_price, columns.pnl, columns.pnl_net, columns.commission, daily, stats)
        if targets is None:
            kernels.sma_simulate_grid(*selected, market.opens, market.closes, *rules)
        elif kernels is not None:
            kernels.simulate_grid(market.opens, market.closes, targets, *rules)
        else:
            for c in range(hi - lo):
                _simulate_numpy(market, targets[c], units, half_spread, plan.commission, plan.cash, columns,
                                c, daily[c], stats[c])
        scores.metrics.extend(_grid_metrics(stats, daily, columns, n))
        scores.trades.extend(int(s) for s in stats[:, 5])
        # hashlib releases the GIL on large buffers: fingerprints hash on all threads
        scores.fingerprints.extend(hashers.map(lambda c: _fingerprint(market, units, columns, c), range(hi - lo)))
        for c in range(lo, hi):
            if c in keep:
                scores._columns[c] = (market, units, columns, c - lo)
        if progress:
            progress("vectorised", hi, total)
    hashers.shutdown()
    _mark_compiled(kernels, progress, message)
    scores.seconds = time.perf_counter() - started
    return scores


# --- bracket strategies ---------------------------------------------------------------------------

def _wilder_rows(values: np.ndarray, periods: np.ndarray, kernels) -> np.ndarray:
    """Wilder averages of ``values`` (valid from bar 1), one row per period, each seeded as backtrader does."""
    rows = np.empty((len(periods), len(values)))
    seeds = np.array([bracket_rules.smma_seed(values, int(p)) if int(p) < len(values) else np.nan for p in periods])
    if kernels is not None:
        kernels.smma_matrix(values, periods, seeds, rows)
    else:
        for j, p in enumerate(periods):
            bracket_rules.smma(values, int(p), float(seeds[j]), rows[j])
    return rows


def wilder_indicators(market_or_frame, rsi_periods, atr_periods, kernels=None) -> tuple[np.ndarray, np.ndarray]:
    """(RSI rows, ATR rows) of an instrument's bars, equal to ``bt.ind.RSI`` / ``bt.ind.ATR`` bit for bit."""
    m = market_or_frame
    if isinstance(m, pd.DataFrame):
        m = _Market.of("", m)
    up, down, true_range = bracket_rules.day_moves(m.closes, m.highs, m.lows)
    rsi_periods = np.asarray(rsi_periods, np.int64)
    atr_periods = np.asarray(atr_periods, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):   # a window without a down move: RSI 100 (backtrader raises)
        rsis = 100.0 - 100.0 / (1.0 + _wilder_rows(up, rsi_periods, kernels) / _wilder_rows(down, rsi_periods, kernels))
    return rsis, _wilder_rows(true_range, atr_periods, kernels)


def _bracket_columns(decl: RsiAtrBrackets, params: list[dict]) -> dict[str, np.ndarray]:
    get = lambda name, kind: np.array([kind(p[getattr(decl, name)]) for p in params])  # noqa: E731
    cols = {name: get(name, int).astype(np.int64) for name in ("rsi_period", "atr_period")}
    if (cols["rsi_period"] < 1).any() or (cols["atr_period"] < 1).any():
        raise MbatsError(f"{decl.rsi_period} and {decl.atr_period} must be periods of 1 bar or more")
    for name in ("oversold", "overbought", "stop_atr", "target_atr"):
        cols[name] = get(name, float).astype(np.float64)
    cols["allow_short"] = get("allow_short", bool)
    return cols


def _score_brackets(plan: GridPlan, market: _Market, kernels, engine: str, notes: list[str], keep: set[int],
                    progress: Progress | None) -> GridScores:
    """Score a bracket strategy's grid: RSI and ATR once per distinct period, then each configuration's brackets."""
    if not (np.isfinite(market.highs).all() and np.isfinite(market.lows).all()):
        raise MbatsError(f"{market.symbol}: high and low prices must be finite numbers")
    cols = _bracket_columns(plan.brackets, plan.params)
    rsi_periods, rsi_idx = np.unique(cols["rsi_period"], return_inverse=True)
    atr_periods, atr_idx = np.unique(cols["atr_period"], return_inverse=True)
    rsis, atrs = wilder_indicators(market, rsi_periods, atr_periods, kernels)
    # the strategy's next() runs once every indicator has a value
    starts = np.maximum(cols["rsi_period"], cols["atr_period"])
    units, n, total = plan.units, len(market.opens), len(plan.params)
    scores = GridScores(engine, plan.labels, [], [], [], 0.0, notes)
    for lo in range(0, total, CHUNK):
        hi = min(lo + CHUNK, total)
        part = slice(lo, hi)
        config = (rsi_idx[part].astype(np.int64), atr_idx[part].astype(np.int64), starts[part], cols["oversold"][part],
                  cols["overbought"][part], cols["allow_short"][part], cols["stop_atr"][part], cols["target_atr"][part])
        counts = np.zeros(hi - lo, np.int64)
        none = ColumnarTrades.empty(np.zeros(hi - lo, np.int64))
        _brackets_pass(market, rsis, atrs, config, plan, kernels, False, none, np.empty((hi - lo, 0)),
                       np.empty((hi - lo, 6)), counts)
        columns = ColumnarTrades.empty(counts)
        daily = np.empty((hi - lo, len(market.day_last)))
        stats = np.empty((hi - lo, 6))
        _brackets_pass(market, rsis, atrs, config, plan, kernels, True, columns, daily, stats, counts)
        scores.metrics.extend(_grid_metrics(stats, daily, columns, n))
        scores.trades.extend(int(s) for s in stats[:, 5])
        scores.fingerprints.extend(_fingerprint(market, units, columns, c) for c in range(hi - lo))
        for c in range(lo, hi):
            if c in keep:
                scores._columns[c] = (market, units, columns, c - lo)
        if progress:
            progress("vectorised", hi, total)
    return scores


def _brackets_pass(market: _Market, rsis: np.ndarray, atrs: np.ndarray, config: tuple, plan: GridPlan, kernels,
                   write: bool, columns: ColumnarTrades, daily: np.ndarray, stats: np.ndarray,
                   counts: np.ndarray) -> None:
    m = market
    trades = (columns.offsets, columns.entry_bar, columns.exit_bar, columns.side, columns.entry_price,
              columns.exit_price, columns.pnl, columns.pnl_net, columns.commission)
    rules = (plan.units, plan.half_spread, plan.commission, plan.cash, m.day_last, m.times_ns)
    if kernels is not None:
        kernels.bracket_grid(m.opens, m.highs, m.lows, m.closes, rsis, atrs, *config, *rules, write, *trades, daily,
                             stats, counts)
        return
    rsi_idx, atr_idx, starts, oversold, overbought, allow_short, stop_k, target_k = config
    entries = np.empty(len(m.opens), np.int8)
    for c in range(len(rsi_idx)):
        bracket_rules.rsi_entries(rsis[rsi_idx[c]], int(starts[c]), float(oversold[c]), float(overbought[c]),
                                  bool(allow_short[c]), entries)
        counts[c] = bracket_rules.bracket_one(m.opens, m.highs, m.lows, m.closes, entries, atrs[atr_idx[c]],
                                              float(stop_k[c]), float(target_k[c]), *rules, int(columns.offsets[c]),
                                              write, *trades[1:], daily[c], stats[c])
