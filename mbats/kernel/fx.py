"""Account currency: convert quote-currency P&L and costs at the rate of the moment.

backtrader keeps trading in each pair's quote currency (fills, sizes and orders are unchanged);
this module re-books the run in the account currency afterwards, fill by fill, the way OANDA
keeps an account: realised P&L and commission are converted at the rate of the fill, open
positions are marked at the rate of each bar's close. A rate comes from the security master's
bars: the pair that converts (QUOTE_ACCOUNT, or ACCOUNT_QUOTE inverted), or a triangulation
through USD. A missing series is an error naming the pair to load, never a silent 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mbats.errors import NotFoundError

HUB = "USD"


def quote_currency(symbol: str) -> str:
    return symbol.split("_", 1)[1]


def conversion_legs(quote: str, account: str) -> list[list[tuple[str, bool]]]:
    """Candidate ways to turn ``quote`` into ``account``: lists of (pair, invert) legs, best first."""
    if quote == account:
        return [[]]
    direct = [[(f"{quote}_{account}", False)], [(f"{account}_{quote}", True)]]
    if HUB in (quote, account):
        return direct
    to_hub = [(f"{quote}_{HUB}", False), (f"{HUB}_{quote}", True)]
    from_hub = [(f"{HUB}_{account}", False), (f"{account}_{HUB}", True)]
    return direct + [[a, b] for a in to_hub for b in from_hub]


@dataclass
class Rate:
    """Account-currency units per one unit of a quote currency, over time."""

    quote: str
    account: str
    legs: list[tuple[str, bool]]
    opens: pd.Series | None = None   # rate at each bar's open (fills at the open use it)
    closes: pd.Series | None = None  # rate at each bar's close (marking to market uses it)

    @property
    def source(self) -> str:
        if not self.legs:
            return "none"
        return " x ".join(f"1/{pair}" if inv else pair for pair, inv in self.legs)

    def at(self, ts: pd.DatetimeIndex, side: str = "close") -> np.ndarray:
        """The rate in force at each time (the last bar at or before it); ``side`` open or close."""
        if not self.legs:
            return np.ones(len(ts))
        series = self.opens if side == "open" else self.closes
        ts = pd.DatetimeIndex(ts).round("s")  # backtrader's float dates stamp 22:00 as 21:59:59.999997
        pos = series.index.searchsorted(ts, side="right") - 1
        if (pos < 0).any():
            first = pd.DatetimeIndex(ts)[pos < 0][0]
            raise NotFoundError(f"no {self.source} rate at or before {first} to convert {self.quote} into "
                                f"{self.account}; load {self.legs[0][0]} bars from before the run's start")
        return series.to_numpy()[pos]


def _leg_series(frame: pd.DataFrame, invert: bool, column: str) -> pd.Series:
    values = frame[column].astype("float64")
    return 1.0 / values if invert else values


def build_rate(quote: str, account: str, available: dict[str, pd.DataFrame], granularity: str) -> Rate:
    """A :class:`Rate` from the bars in ``available`` (symbol -> bars), or a clear error."""
    candidates = conversion_legs(quote, account)
    for legs in candidates:
        if all(pair in available and len(available[pair]) for pair, _ in legs):
            if not legs:
                return Rate(quote, account, [])
            opens = closes = None
            for pair, invert in legs:
                o, c = _leg_series(available[pair], invert, "open"), _leg_series(available[pair], invert, "close")
                if opens is None:
                    opens, closes = o, c
                else:  # triangulate on the first leg's times, the second leg as of then
                    idx = opens.index
                    opens = opens * o.reindex(idx, method="ffill").to_numpy()
                    closes = closes * c.reindex(idx, method="ffill").to_numpy()
            return Rate(quote, account, legs, opens.dropna(), closes.dropna())
    first = candidates[0][0][0]
    others = sorted({pair for legs in candidates[1:] for pair, _ in legs} - {first})
    raise NotFoundError(
        f"account currency {account}: no {granularity} bars to convert {quote} P&L; load {first}"
        + (f" (or {', '.join(others)})" if others else "")
        + f" {granularity} bars covering the run, e.g. `mbats data download {first} --granularity {granularity}`"
    )


def realised_pl(units: float, entry_price: float, exit_price: float, rate: float) -> float:
    """OANDA's realised P&L of closing ``units`` (signed like the position: + long), home currency.

    ``units x (exit - entry)`` in the quote currency with both prices *as filled* (spread and
    slippage inside them), converted at ``rate``, the conversion rate at the close: the entry's
    spread is converted at the exit's rate too. Commission and financing are converted at their own
    times. The simulator (:mod:`mbats.sim.broker`) books fills with it, the backtest broker
    (:mod:`mbats.backtest.account`) and :func:`rebook` book backtrader's fills with it.
    """
    return units * (exit_price - entry_price) * rate


def needed_pairs(instruments: list[str], account: str) -> list[str]:
    """Every pair that could convert these instruments' quote currencies (for loading from the secmaster)."""
    pairs: list[str] = []
    for quote in sorted({quote_currency(s) for s in instruments}):
        for legs in conversion_legs(quote, account):
            pairs.extend(p for p, _ in legs if p not in pairs)
    return pairs


def needs_conversion(instruments: list[str], account: str) -> bool:
    return any(quote_currency(s) != account for s in instruments)


def rebook(cash0: float, fills: list[dict], trades: pd.DataFrame, equity: pd.DataFrame, positions: list[dict],
           bars: dict[str, pd.DataFrame], rates: dict[str, Rate], fraction: float = 0.0) -> pd.DataFrame:
    """Convert fills, trades, positions (in place) and the equity curve (returned) into ``account``.

    OANDA's rule (:func:`realised_pl`): backtrader fills at the mid and books the spread and slippage
    as commission; OANDA has them inside the fill price, so they are realised with the units they
    came with, at the close's rate. ``fraction`` is the run's commission on notional, booked at its
    own fill's rate. So a closed trade nets ``(pnl - spread costs) x exit rate - commission on
    notional at each fill's rate``, exactly what OANDA (and the simulator) book for it.

    Fills keep their cost converted at their own time (``fx_rate``). The equity curve: ``cash`` is
    OANDA's balance (realised P&L, commission, not the open units' entry spread), ``value`` adds the
    open units x (close - average entry) less that spread, at the rate of each bar's close.
    """
    for symbol, rate in rates.items():  # one lookup per instrument, not per fill
        mine = [f for f in fills if f["instrument"] == symbol]
        if not mine:
            continue
        at = rate.at(pd.DatetimeIndex([f["ts"] for f in mine]), "open")
        for fill, r in zip(mine, at.tolist()):
            fill["fx_rate"] = r
            fill["commission_quote"] = fill["commission"]
            fill["commission"] = fill["commission"] * r

    if len(trades):
        for symbol, rate in rates.items():
            rows = (trades["instrument"] == symbol).to_numpy()
            if not rows.any() or not rate.legs:
                continue
            sub = trades.loc[rows]
            closed = ~sub["is_open"].astype(bool).to_numpy()
            entry_rate = rate.at(pd.DatetimeIndex(sub["entry_ts"]), "open")
            exit_ts = pd.DatetimeIndex(sub["exit_ts"].fillna(sub["entry_ts"]))
            exit_rate = np.where(closed, rate.at(exit_ts, "open"), np.nan)
            comm = sub["commission"].to_numpy(dtype="float64")
            # commission on notional of the entry: at the entry's rate; every other cost at the exit's
            entry_fraction = sub["size"].to_numpy(dtype="float64") * sub["entry_price"].to_numpy(dtype="float64") * fraction
            comm_acct = comm * exit_rate - entry_fraction * (exit_rate - entry_rate)
            pnl = sub["pnl"].to_numpy(dtype="float64") * exit_rate
            trades.loc[rows, "pnl"] = np.where(closed, pnl, sub["pnl"])
            trades.loc[rows, "commission"] = np.where(closed, comm_acct, sub["commission"])
            trades.loc[rows, "pnl_net"] = np.where(closed, pnl - comm_acct, sub["pnl_net"])

    # the equity curve, rebuilt from the fills by the same rule: a loop over the fills only (the state
    # after each), then every bar takes the state of its last fill and is marked in numpy
    index = pd.DatetimeIndex(equity.index)
    # backtrader's float dates stamp 04:00 as 03:59:59.999997: round, or the bar before's close marks it
    closes = {s: bars[s]["close"].reindex(index.round("s"), method="ffill").to_numpy() for s in rates}
    marks = {s: rates[s].at(index, "close") for s in rates}
    order = sorted(range(len(fills)), key=lambda i: fills[i]["ts"])
    # a fill belongs to the bar it executed on; float dates may stamp the two a few microseconds apart
    stamps = index.round("s").as_unit("ns").asi8
    fill_ns = pd.DatetimeIndex([fills[i]["ts"] for i in order]).round("s").as_unit("ns").asi8 if order else \
        np.empty(0, dtype="int64")
    state = {s: [0.0, 0.0, 0.0] for s in rates}  # units, average (mid) price, entry spread not yet realised
    after = {s: np.zeros((len(order), 3)) for s in rates}  # each instrument's state after each fill
    balances = np.empty(len(order))
    balance = float(cash0)
    for k, i in enumerate(order):
        f = fills[i]
        units, avg, pending = state[f["instrument"]]
        size, price, rate = float(f["size"]), float(f["price"]), f["fx_rate"]
        notional = abs(size) * price * fraction
        spread = f["commission_quote"] - notional  # spread and slippage of this fill, quote currency
        balance -= notional * rate
        closing = min(abs(size), abs(units)) * np.sign(units) if units and np.sign(size) != np.sign(units) else 0.0
        if closing:
            share = pending * abs(closing) / abs(units)
            pending -= share
            exit_cost = spread * abs(closing) / abs(size)
            balance += realised_pl(closing, avg + share / closing, price - exit_cost / closing, rate)
        if abs(size) > abs(closing):
            pending += spread * (abs(size) - abs(closing)) / abs(size)
        new = units + size
        if new == 0:
            avg = 0.0
        elif units == 0 or np.sign(new) != np.sign(units):
            avg = price
        elif np.sign(size) == np.sign(units):
            avg = (units * avg + size * price) / new
        state[f["instrument"]] = [new, avg, pending]
        for s in rates:
            after[s][k] = state[s]
        balances[k] = balance
    last = np.searchsorted(fill_ns, stamps, side="right") - 1  # each bar's last fill (-1: none yet)
    some = last >= 0
    at = np.clip(last, 0, None)
    cash = np.where(some, balances[at] if len(order) else 0.0, float(cash0))
    unrealised = np.zeros(len(index))
    for s in rates:
        if not len(order):
            break
        u, a, p = after[s][at, 0], after[s][at, 1], after[s][at, 2]
        open_ = some & (u != 0)
        unrealised = unrealised + np.where(open_, (u * (closes[s] - a) - p) * marks[s], 0.0)
    values = cash + unrealised
    for pos in positions:
        rate = rates[pos["instrument"]]
        pos["unrealized_pnl"] = pos["unrealized_pnl"] * float(rate.at(pd.DatetimeIndex([pos["ts"]]), "close")[0])
    for fill in fills:
        del fill["commission_quote"]
    return pd.DataFrame({"cash": cash, "value": values}, index=equity.index)
