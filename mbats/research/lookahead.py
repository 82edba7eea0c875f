"""Look-ahead check for user strategies: does any decision change when future bars are removed?

A strategy that only uses the past decides the same at bar *t* whether the history ends at *t* or
runs on for years. This module runs a strategy on the full history and on several truncated
histories (every instrument cut at the same time) and compares what it decided up to each cut:

* a :class:`~mbats.kernel.signals.SignalStrategy`: its ``signals()`` target series, bar by bar
  (cheap: no backtrader run);
* any other backtrader strategy: the orders it issued (bar created, instrument, side, type, size,
  limit/stop price) — through :func:`mbats.backtest.runner.simulate`, the same engine as a backtest.

Each difference names the cut and the first bar where the truncated run decided otherwise; that
bar is where the strategy read data it could not have had.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.backtest.recorder import _ORDER_TYPES
from mbats.backtest.runner import BacktestSpec, simulate
from mbats.errors import MbatsError
from mbats.kernel.signals import has_signals
from mbats.kernel.strategies import coerce_params, declared_params, find_strategy, strategy_name

DEFAULT_CUTS = 5
MIN_BARS = 10   # shortest truncated history worth running


@dataclass(frozen=True)
class Difference:
    """The first decision that changed when the history was cut after ``cut``."""

    instrument: str | None       # None: an order-level difference of a run over several instruments
    cut: pd.Timestamp            # last bar kept in the truncated history
    first_ts: pd.Timestamp       # first bar whose decision differs
    full: object                 # what the full-history run decided there
    truncated: object            # what the truncated run decided there

    def to_dict(self) -> dict:
        return {"instrument": self.instrument, "cut": self.cut.isoformat(), "first_ts": self.first_ts.isoformat(),
                "full": _plain(self.full), "truncated": _plain(self.truncated)}


@dataclass
class LookaheadReport:
    strategy: str
    method: str                  # "signals" or "orders"
    params: dict[str, object]
    bars: int                    # bars of the full history (largest instrument)
    cuts: list[pd.Timestamp]
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def first(self) -> Difference | None:
        return min(self.differences, key=lambda d: d.first_ts) if self.differences else None

    def to_dict(self) -> dict:
        first = self.first
        return {"strategy": self.strategy, "method": self.method, "params": _plain(self.params), "bars": self.bars,
                "cuts": [c.isoformat() for c in self.cuts], "lookahead": not self.ok,
                "first_difference": first.to_dict() if first else None,
                "differences": [d.to_dict() for d in self.differences]}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def cut_points(index: pd.DatetimeIndex, cuts: int = DEFAULT_CUTS) -> list[pd.Timestamp]:
    """``cuts`` distinct bars spread from a fifth of the history to just before its end.

    The last cut leaves out only the final bar: a peek one bar ahead shows up there for sure.
    """
    if cuts < 1:
        raise MbatsError("the look-ahead check needs at least one cut")
    n = len(index)
    if n < MIN_BARS + 1:
        raise MbatsError(f"the look-ahead check needs at least {MIN_BARS + 1} bars (got {n})")
    positions = np.linspace(max(MIN_BARS, n // 5), n - 2, cuts).round().astype(int)
    return [index[p] for p in sorted(set(positions.tolist()))]


def _truncate(bars: dict[str, pd.DataFrame], cut: pd.Timestamp) -> dict[str, pd.DataFrame]:
    return {s: frame[frame.index <= cut] for s, frame in bars.items()}


# --- signal strategies: compare target series ---------------------------------------------------

def _targets(cls: type, frame: pd.DataFrame, params: dict) -> np.ndarray:
    values = np.asarray(cls.signals(frame, **params), dtype=np.float64)
    if values.shape != (len(frame),):
        raise MbatsError(f"{strategy_name(cls)}.signals returned {values.shape[0] if values.ndim else 0} values "
                         f"for {len(frame)} bars")
    return values


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int | None:
    differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    hits = np.flatnonzero(differs)
    return int(hits[0]) if len(hits) else None


def _check_signals(cls: type, spec: BacktestSpec, bars: dict[str, pd.DataFrame], params: dict,
                   cuts: list[pd.Timestamp]) -> list[Difference]:
    differences = []
    for symbol in spec.instruments:
        frame = bars[symbol]
        full = _targets(cls, frame, params)
        for cut in cuts:
            kept = int(frame.index.searchsorted(cut, side="right"))
            if kept < 1 or kept == len(frame):
                continue
            truncated = _targets(cls, frame.iloc[:kept], params)
            at = _first_mismatch(full[:kept], truncated)
            if at is not None:
                differences.append(Difference(symbol, cut, frame.index[at], full[at], truncated[at]))
    return differences


# --- any backtrader strategy: compare the orders issued -----------------------------------------

ORDER_FIELDS = ("created_at", "instrument", "side", "order_type", "size", "price")


def _recorded(cls: type) -> tuple[type, list[dict]]:
    """``cls`` with every order it creates written down as it is created.

    The run's Recorder learns of an order only from broker notifications, which backtrader delivers
    on the following bar, so orders created on the last bar would be missing. ``buy`` and ``sell``
    are the two doors every order goes through (``close``, ``order_target_*`` and brackets call them).
    """
    captured: list[dict] = []

    def keep(order) -> None:
        if order is not None:
            captured.append({"created_at": pd.Timestamp(bt.num2date(order.created.dt), tz="UTC"),
                             "instrument": order.data._name, "side": "buy" if order.isbuy() else "sell",
                             "order_type": _ORDER_TYPES.get(order.exectype, str(order.exectype)),
                             "size": abs(order.created.size),
                             "price": order.created.price if order.exectype != bt.Order.Market else None})

    class Recorded(cls):
        def buy(self, *args, **kwargs):
            order = super().buy(*args, **kwargs)
            keep(order)
            return order

        def sell(self, *args, **kwargs):
            order = super().sell(*args, **kwargs)
            keep(order)
            return order

    return Recorded, captured


def _orders(spec: BacktestSpec, bars: dict[str, pd.DataFrame], cls: type) -> pd.DataFrame:
    recorded, captured = _recorded(cls)
    simulate(spec, bars, recorded)
    frame = pd.DataFrame(captured, columns=list(ORDER_FIELDS))
    for col in ("size", "price"):  # the same arithmetic on the same bars: equal to 1e-9 or a real change
        frame[col] = frame[col].astype(float).round(9)
    return frame.sort_values(list(ORDER_FIELDS), na_position="first").reset_index(drop=True)


def _check_orders(cls: type, spec: BacktestSpec, bars: dict[str, pd.DataFrame],
                  cuts: list[pd.Timestamp]) -> list[Difference]:
    full = _orders(spec, bars, cls)
    differences = []
    for cut in cuts:
        truncated = _orders(spec, _truncate(bars, cut), cls)
        before = full[full["created_at"] <= cut]
        merged = before.merge(truncated, how="outer", on=list(ORDER_FIELDS), indicator=True)
        changed = merged[merged["_merge"] != "both"]
        if changed.empty:
            continue
        first_ts = changed["created_at"].min()
        at = lambda frame: [_order_text(r) for r in frame[frame["created_at"] == first_ts].itertuples()]  # noqa: E731
        differences.append(Difference(None if len(spec.instruments) > 1 else spec.instruments[0], cut, first_ts,
                                      at(before), at(truncated)))
    return differences


def _order_text(row) -> str:
    price = "" if pd.isna(row.price) else f" @ {row.price:g}"
    return f"{row.side} {row.size:g} {row.instrument} {row.order_type}{price}"


def check_lookahead(spec: BacktestSpec, bars: dict[str, pd.DataFrame], cuts: int | list[pd.Timestamp] = DEFAULT_CUTS,
                    strategy_cls: type | None = None) -> LookaheadReport:
    """Run ``spec``'s strategy on ``bars`` and on histories cut at several bars; report what changed.

    ``bars`` may hold conversion pairs beyond ``spec.instruments`` (they are cut too).
    """
    cls = strategy_cls or find_strategy(spec.strategy)
    params = coerce_params(cls, spec.params)
    longest = max((bars[s] for s in spec.instruments), key=len)
    points = cuts if isinstance(cuts, list) else cut_points(longest.index, cuts)
    if has_signals(cls):
        differences = _check_signals(cls, spec, bars, declared_params(cls) | params, points)
        method = "signals"
    else:
        differences = _check_orders(cls, replace(spec, params=params), bars, points)
        method = "orders"
    differences.sort(key=lambda d: (d.first_ts, d.cut))
    return LookaheadReport(strategy_name(cls), method, params, len(longest), points, differences)
