"""A vectorised simulator of signal strategies with backtrader's fills, costs and trade records.

Rules, the same as :func:`mbats.backtest.runner.simulate` with a :class:`SignalStrategy`:

* the target decided on bar *i*'s close is filled at bar *i+1*'s open, at mid;
* a change of target closes the open trade (if any) and opens a new one (if not flat), each a
  separate fill of ``units`` charged ``units * (half_spread + price * commission)``;
* the trade list has backtrader's values bit for bit: entry price ``(units*open)/units``,
  P&L ``size * (exit - entry)``, exit price recovered from P&L as the recorder does.

* pairs quoted outside the account currency are re-booked by :func:`mbats.kernel.fx.rebook`,
  the backtest's own conversion (OANDA's rule: the spread realised at the exit's rate).

Not modelled: margin rejections (fixed units far below the account's margin are assumed) and
percent sizers; :func:`mbats.research.sweep` flags any disagreement with backtrader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mbats.backtest.runner import BacktestSpec
from mbats.kernel import fx
from mbats.kernel.costs import fill_cost_per_unit
from mbats.kernel.sizing import parse_sizer
from mbats.kernel.trades import TRADE_COLUMNS
from mbats.kernel.signals import has_signals
from mbats.kernel.strategies import coerce_params, find_strategy, strategy_name
from mbats.errors import MbatsError
from mbats.risk.metrics import compute_metrics, drawdown


@dataclass
class VectorRun:
    trades: pd.DataFrame
    equity: pd.DataFrame
    metrics: dict[str, float | None]
    params: dict[str, object]
    bars: int
    bars_in_market: int
    seconds: float


@dataclass
class _Leg:
    trades: list[dict]
    cash_flow: np.ndarray   # per bar, signed: fills' notional and costs
    units_held: np.ndarray  # per bar, signed units after that bar's open


def fixed_units(sizer: str) -> int:
    cls, kwargs = parse_sizer(sizer)
    if "stake" not in kwargs:
        raise MbatsError(f"vectorised simulation needs a fixed sizer (fixed:units=N), not '{sizer}'")
    return int(kwargs["stake"])


def trade_targets(symbol: str, bars: pd.DataFrame, target: np.ndarray, units: int, half_spread: float,
                  rate: float) -> _Leg:
    """Fills, trades and holdings for one instrument trading ``target`` (-1/0/+1 per bar)."""
    n = len(bars)
    target = np.asarray(target, dtype=np.int64)
    pos = np.concatenate(([0], target[:-1]))          # held from each bar's open
    opens = bars["open"].to_numpy(np.float64)
    changes = np.flatnonzero(pos[1:] != pos[:-1]) + 1
    old, new = pos[changes - 1], pos[changes]
    price = opens[changes]
    comm = units * (half_spread + price * rate)       # same expression as FxCosts, per fill
    cash_flow = np.zeros(n)
    # closing fill then opening fill, each at the open: cash -= size * price + commission
    flow = np.where(old != 0, -(-old * units) * price - comm, 0.0) + np.where(new != 0, -(new * units) * price - comm, 0.0)
    np.add.at(cash_flow, changes, flow)

    trades: list[dict] = []
    entries = np.flatnonzero(new != 0)
    if len(entries):
        stamps = bars.index.as_unit("us")  # backtrader's recorder yields microsecond timestamps
        high, low = bars["high"].to_numpy(np.float64), bars["low"].to_numpy(np.float64)
        closed = entries[entries + 1 < len(changes)]
        e_bar, x_bar = changes[closed], changes[closed + 1]
        side = new[closed]
        size = side * units
        entry = (size * opens[e_bar]) / size          # backtrader's average price of the opening fill
        exit_open = opens[x_bar]
        pnl = (-(-size)) * (exit_open - entry) * 1.0  # CommInfo.profitandloss(-closing size, entry, exit)
        commission = (0.0 + comm[closed]) + comm[closed + 1]
        sign = side.astype(np.float64)
        exit_price = entry + sign * pnl / units       # as the recorder recovers it
        seg_high = np.maximum.reduceat(high, np.ravel(np.column_stack((e_bar, x_bar))))[::2]
        seg_low = np.minimum.reduceat(low, np.ravel(np.column_stack((e_bar, x_bar))))[::2]
        best = np.where(side > 0, np.maximum(entry, seg_high), np.minimum(entry, seg_low))
        worst = np.where(side > 0, np.minimum(entry, seg_low), np.maximum(entry, seg_high))
        frame = pd.DataFrame({
            "instrument": symbol,
            "direction": np.where(side > 0, "long", "short"),
            "size": np.full(len(closed), units),
            "entry_ts": stamps[e_bar],
            "entry_price": entry,
            "exit_ts": stamps[x_bar],
            "exit_price": exit_price,
            "pnl": pnl,
            "pnl_net": pnl - commission,
            "commission": commission,
            "return_pct": 100.0 * sign * (exit_price / entry - 1.0),
            # the recorder's max(x, 0.0) / min(x, 0.0) keep x when tied, so -0.0 stays -0.0
            "mfe_pct": 100.0 * np.where((best - entry) * sign >= 0.0, (best - entry) * sign, 0.0) / entry,
            "mae_pct": 100.0 * np.where((worst - entry) * sign <= 0.0, (worst - entry) * sign, 0.0) / entry,
            "bars_held": (x_bar - e_bar).astype(np.float64),
            "is_open": False,
        })
        trades = frame.to_dict("records")
        if entries[-1] + 1 >= len(changes):           # the last entry is still open at the end
            last = changes[entries[-1]]
            trades.append({"instrument": symbol, "direction": "long" if new[entries[-1]] > 0 else "short",
                           "size": units, "entry_ts": stamps[last], "entry_price": (units * opens[last]) / units,
                           "is_open": True})
    return _Leg(trades, cash_flow, pos * units)


def vector_simulate(spec: BacktestSpec, bars: dict[str, pd.DataFrame], strategy_cls=None) -> VectorRun:
    """Simulate a signal strategy over in-memory bars; same trades and metrics as ``simulate``."""
    started = time.perf_counter()
    cls = strategy_cls or find_strategy(spec.strategy)
    if not has_signals(cls):
        raise MbatsError(f"strategy {strategy_name(cls)} declares no vectorised signals (a SignalStrategy)")
    params = coerce_params(cls, spec.params)
    full = {k: getattr(cls.params, k) for k in cls.params._getkeys()} | params
    units = fixed_units(spec.sizer)
    legs: dict[str, _Leg] = {}
    for symbol in spec.instruments:
        frame = bars[symbol]
        target = np.asarray(cls.signals(frame, **full), dtype=np.int64)
        legs[symbol] = trade_targets(symbol, frame, target, units, fill_cost_per_unit(spec, symbol),
                                     spec.commission)
    index = bars[spec.instruments[0]].index
    for symbol in spec.instruments[1:]:
        index = index.union(bars[symbol].index)
    cash = np.full(len(index), spec.cash)
    value_held = np.zeros(len(index))
    in_market = np.zeros(len(index), dtype=bool)
    for symbol, leg in legs.items():
        where = index.get_indexer(bars[symbol].index)
        flow = np.zeros(len(index))
        flow[where] = leg.cash_flow
        cash += np.cumsum(flow)
        held = pd.Series(np.nan, index=index)
        held.iloc[where] = leg.units_held * bars[symbol]["close"].to_numpy()
        value_held += held.ffill().fillna(0.0).to_numpy()
        units = np.zeros(len(index))
        units[where] = leg.units_held
        in_market |= pd.Series(np.where(np.isin(np.arange(len(index)), where), units, np.nan)).ffill().fillna(0).to_numpy() != 0
    equity = pd.DataFrame({"cash": cash, "value": cash + value_held}, index=index.rename("ts"))
    rows = [t for leg in legs.values() for t in leg.trades]
    trades = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    trades["trade_ref"] = [str(i + 1) for i in range(len(trades))]
    if len(trades):
        trades = trades.sort_values(["entry_ts", "instrument"], kind="stable").reset_index(drop=True)
    if fx.needs_conversion(spec.instruments, spec.account_currency):
        equity = _in_account_currency(spec, bars, trades, equity)
    equity["drawdown_pct"] = drawdown(equity["value"])
    metrics = compute_metrics(equity["value"], trades, len(index), int(in_market.sum()))
    return VectorRun(trades, equity, metrics, params, len(index), int(in_market.sum()),
                     time.perf_counter() - started)


def _in_account_currency(spec: BacktestSpec, bars: dict[str, pd.DataFrame], trades: pd.DataFrame,
                         equity: pd.DataFrame) -> pd.DataFrame:
    """Trades (in place) and equity re-booked into the account currency exactly as the backtest does.

    The backtest hands backtrader's fills to :func:`mbats.kernel.fx.rebook`; here the same fills are
    rebuilt from the trades (each trade an entry and an exit fill at the bar's open, closing fills
    before opening ones) and go through the same function, so both engines convert by one rule.
    """
    rates = {s: fx.build_rate(fx.quote_currency(s), spec.account_currency, bars, spec.granularity)
             for s in spec.instruments}
    fills: list[dict] = []
    for row in trades.itertuples(index=False):
        opens, per_unit = bars[row.instrument]["open"], fill_cost_per_unit(spec, row.instrument)
        units = row.size if row.direction == "long" else -row.size
        legs = [(row.entry_ts, units)] + ([] if row.is_open else [(row.exit_ts, -units)])
        for ts, size in legs:
            price = float(opens.at[pd.Timestamp(ts).as_unit("ns")])
            fills.append({"instrument": row.instrument, "ts": pd.Timestamp(ts), "size": float(size), "price": price,
                          "commission": abs(size) * (per_unit + price * spec.commission)})
    return fx.rebook(spec.cash, fills, trades, equity, [], bars, rates, spec.commission)
