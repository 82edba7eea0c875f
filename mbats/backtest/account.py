"""OANDA's account rules in backtests: daily financing, margin checks and margin closeout.

backtrader trades each pair in its quote currency; this broker keeps, next to it, the account the
way OANDA (and the project's simulator, :mod:`mbats.sim.broker`) keeps it, in the account currency:

* **Financing**: at every 17:00 New York rollover, each position opened before it pays or earns
  |units| x mid x its side's annual rate x days charged / 365 (Wednesday three days), converted
  at the mid of the conversion pair (:mod:`mbats.secmaster.financing`). The mid at a moment is
  the open of the bar starting then, else the close of the last bar ended by then — the
  simulator's price rule — so both engines charge the same amounts.
* **Margin**: a new order is accepted only if the margin used after it (|units| x mid x the larger
  of the account's and the instrument's margin rate, in the account currency) stays within the
  NAV; otherwise it is rejected with backtrader's ``Margin`` status and OANDA's reason
  ``INSUFFICIENT_MARGIN`` (a risk event of the run). It replaces backtrader's own stock-like cash
  check, which asks for the whole notional. Checked where it fills: at the fill bar's open.
* **Closeout**: when the NAV (positions valued at the side they would close on) is at or below
  half the margin used, every position is closed at that bar's open (``MARGIN_CLOSEOUT``).

Strategies see backtrader's cash, which leaves financing out: a percent sizer sizes on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bisect
import math

import backtrader as bt
import numpy as np
import pandas as pd

from mbats.kernel.fx import conversion_legs, realised_pl
from mbats.secmaster.financing import FinancingTerms, Schedule, rollovers

DEFAULT_MARGIN_RATE = 0.02  # OANDA's 50:1 for majors, the simulator's default account margin rate


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


_EPOCH_ORDINAL = 719163.0  # backtrader's day number of 1970-01-01
NS_PER_DAY = 86_400 * 1_000_000_000


def bt_ns(num: float) -> int:
    """backtrader's float day number → UTC ns, rounded to the second (float dates drift by microseconds)."""
    return int(round((num - _EPOCH_ORDINAL) * 86_400)) * 1_000_000_000


def _ns(when) -> int:
    return when if isinstance(when, (int, np.integer)) else _utc(when).value


@dataclass
class Prices:
    """Mid prices of every loaded pair at any moment (ns or Timestamp), by the simulator's rule."""

    bars: dict[str, pd.DataFrame]
    step: pd.Timedelta
    _cols: dict = field(default_factory=dict, repr=False)
    _legs: dict = field(default_factory=dict, repr=False)
    _cursor: dict = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)  # (quote, account) -> (ns, rate) last asked

    def _columns(self, symbol: str):
        if symbol not in self._cols:  # plain lists: the per-bar lookups below compare Python numbers
            frame = self.bars[symbol]
            self._cols[symbol] = (pd.DatetimeIndex(frame.index).tz_convert("UTC").as_unit("ns").asi8.tolist(),
                                  frame["open"].astype("float64").tolist(), frame["close"].astype("float64").tolist())
        return self._cols[symbol]

    def index(self, symbol: str, t: int) -> int:
        """Index of the last bar of ``symbol`` opened at or before ``t`` (-1 if none).

        Backtests ask about moments that mostly move forward bar by bar, so a cursor per symbol
        answers in a step or two; a jump elsewhere falls back to a binary search.
        """
        times = self._columns(symbol)[0]
        i, n = self._cursor.get(symbol, -1), len(times)
        if 0 <= i < n and times[i] <= t:
            steps = 0
            while i + 1 < n and times[i + 1] <= t and steps < 8:
                i, steps = i + 1, steps + 1
            if i + 1 < n and times[i + 1] <= t:
                i = bisect.bisect_right(times, t) - 1
        else:
            i = bisect.bisect_right(times, t) - 1
        self._cursor[symbol] = i
        return i

    def mid(self, symbol: str, when) -> float | None:
        """The open of the bar in progress at ``when`` (one starting then counts), else the last close."""
        return self.locate(symbol, _ns(when))[1]

    def locate(self, symbol: str, t: int) -> tuple[int, float | None]:
        """(index of the bar of ``symbol`` at ``t`` as :meth:`index`, the mid then as :meth:`mid`)."""
        times, opens, closes = self._columns(symbol)
        i = self.index(symbol, t)
        if i < 0:
            return i, None
        return i, (opens[i] if t < times[i] + self.step.value else closes[i])

    def conversion(self, quote: str, account: str, when) -> float:
        """Account-currency units per unit of ``quote`` at ``when`` (direct, inverse or through USD)."""
        if quote == account:
            return 1.0
        key = (quote, account)
        t = _ns(when)
        last = self._memo.get(key)
        if last is not None and last[0] == t:  # asked again within the bar (closeout, fills, margin)
            return last[1]
        rate = self._convert(key, t)
        self._memo[key] = (t, rate)
        return rate

    def legs(self, quote: str, account: str) -> list[tuple[str, bool]] | None:
        """The (pair, invert) legs converting ``quote`` into ``account`` from the loaded bars (None: none)."""
        key = (quote, account)
        if key not in self._legs:
            self._legs[key] = next((legs for legs in conversion_legs(quote, account)
                                    if all(pair in self.bars for pair, _ in legs)), None)
        return self._legs[key]

    def _convert(self, key: tuple[str, str], when: int) -> float:
        quote, account = key
        legs = self.legs(quote, account)
        rate = None if legs is None else 1.0
        for pair, invert in legs or []:
            price = self.mid(pair, when)
            if price is None:
                rate = None
                break
            rate *= 1.0 / price if invert else price
        if rate is None:
            from mbats.errors import NotFoundError

            raise NotFoundError(f"no {quote}_{account} (or {account}_{quote}) price at {pd.Timestamp(_ns(when), tz='UTC')} "
                                f"to convert {quote} into {account}; load that pair's bars")
        return rate


@dataclass
class AccountRules:
    """What the broker needs to keep an OANDA account: terms, prices, exit costs, account currency."""

    schedule: Schedule
    prices: Prices
    account_currency: str
    exit_costs: dict[str, tuple[pd.Series, pd.Series]]  # per unit of a buy / a sell at each bar's open
    margin_rate: float = DEFAULT_MARGIN_RATE
    financing: bool = True  # False when no rates are stored: margin still applies, at the account's rate
    _costs: dict = field(default_factory=dict, repr=False)
    _worst: dict = field(default_factory=dict, repr=False)  # (symbol, long) -> worst exit cost per unit

    def terms(self, symbol: str, when) -> FinancingTerms | None:
        rows = self.schedule.terms.get(symbol.upper(), [])
        if len(rows) <= 1:  # the common case: one row, whatever the time
            return rows[0] if rows else None
        return self.schedule.at(symbol, pd.Timestamp(_ns(when), tz="UTC"))

    def margin_rate_of(self, symbol: str, when) -> float:
        rows = self.schedule.terms.get(symbol, ())
        if len(rows) == 1:  # the common case, every bar: no time lookup
            return max(self.margin_rate, rows[0].margin_rate)
        terms = self.terms(symbol, when)
        return max(self.margin_rate, terms.margin_rate) if terms is not None else self.margin_rate

    def worst_exit_cost(self, symbol: str, units: float) -> float:
        """The largest per-unit cost of closing ``units`` of ``symbol`` on any bar (nan if unknown)."""
        key = (symbol, units > 0)
        if key not in self._worst:
            self.exit_cost(symbol, units, 0, 0)  # builds the per-bar lists
            side = self._costs[symbol][1 if units > 0 else 0]
            self._worst[key] = max(side) if side and all(math.isfinite(c) for c in side) else math.nan
        return self._worst[key]

    def exit_cost(self, symbol: str, units: float, when, index: int | None = None) -> float:
        """Per-unit cost of closing ``units`` at ``when``: a long sells (bid side), a short buys.

        ``index``: the symbol's bar at ``when`` when the caller has it (:meth:`Prices.locate`)."""
        if symbol not in self._costs:  # indexed like the symbol's bars (side_costs of the same frame)
            buy, sell = self.exit_costs[symbol]
            self._costs[symbol] = (buy.astype("float64").tolist(), sell.astype("float64").tolist())
        buy, sell = self._costs[symbol]
        i = max(self.prices.index(symbol, _ns(when)) if index is None else index, 0)
        return sell[i] if units > 0 else buy[i]


class OandaAccountMixin:
    """Financing, OANDA's margin check and margin closeout on top of a backtrader broker."""

    def setup_account(self, rules: AccountRules, cash: float) -> None:
        self.rules = rules
        self.balance = float(cash)  # account currency: cash + realised P&L - costs + financing
        self._entry_spread: dict = {}  # data -> spread paid on its open units, quote currency, not yet realised
        self.financing_entries: list[dict] = []
        self.margin_events: list[dict] = []
        self.margin_used: dict[int, float] = {}  # ns -> account currency, only where it changed
        self._filled = False
        self._last_used = 0.0
        self._owner = None
        self._closeout_refs: set[int] = set()
        # the closeout check's shortcut (see _safe_band): valid while the account is unchanged
        self._version = 0  # bumped by every order notification and financing charge
        self._band: tuple | None = None
        # every 17:00 New York of the data's span, once: each bar then only compares integers
        first = min(frame.index[0] for frame in rules.prices.bars.values())
        last = max(frame.index[-1] for frame in rules.prices.bars.values())
        rolls = rollovers(first - pd.Timedelta(days=1), last + pd.Timedelta(days=8))
        self._roll_ns = pd.DatetimeIndex(rolls["ts"]).as_unit("ns").asi8
        self._roll_weekday = rolls["weekday"].to_numpy()
        self._roll_next = None  # index of the first rollover after the first bar

    # --- bookkeeping ------------------------------------------------------------------------
    def _now(self) -> int | None:
        latest = None
        for data in self.positions:  # the datas (backtrader adds each one's position as it starts)
            clock = data.lines.datetime
            if clock.lencount:  # len(data) without the line machinery
                num = clock.array[clock.idx]  # datetime[0]
                latest = num if latest is None or num > latest else latest
        return bt_ns(latest) if latest is not None else None

    def _quote(self, symbol: str) -> str:
        return symbol.split("_", 1)[1]

    def _to_account(self, symbol: str, amount: float, when) -> float:
        return amount * self.rules.prices.conversion(self._quote(symbol), self.rules.account_currency, when)

    def notify(self, order):
        self._version += 1  # any execution may have moved a position: the closeout band is redone
        if order.status == bt.Order.Completed and order.executed.size:
            self._filled = True
            self._book_fill(order)
        return super().notify(order)

    def _book_fill(self, order) -> None:
        """Book a fill into the OANDA balance by :func:`mbats.kernel.fx.realised_pl`.

        backtrader fills at the mid and charges the spread (and slippage) as commission; OANDA has
        them inside the fill price and realises them when the units close, converted at the close's
        rate. So an opening fill's spread waits in ``_entry_spread`` (quote currency) and is realised
        with the units it came with; a commission on notional is booked at its fill's rate.
        """
        data = order.data
        fraction = getattr(self.getcommissioninfo(data).p, "rate", 0.0) or 0.0
        for bit in order.executed.exbits:  # one per execution; closed/opened are signed like the fill
            rate = self.rules.prices.conversion(self._quote(data._name), self.rules.account_currency, bt_ns(bit.dt))
            closed, opened = abs(bit.closed), abs(bit.opened)
            closed_spread = bit.closedcomm - closed * bit.price * fraction
            self.balance -= (closed + opened) * bit.price * fraction * rate
            pending = self._entry_spread.get(data, 0.0)
            if closed:
                before = bit.psize - bit.size  # bit.psize: the position after this execution
                share = pending * closed / abs(before)
                pending -= share
                units = -bit.closed  # signed like the position
                mid_entry = bit.price - bit.pnl / units  # backtrader's average entry (pnl = units x (price - avg))
                # as filled: the entry plus its spread per unit, the exit less its own
                entry = mid_entry + share / units
                exit_ = bit.price - closed_spread / units
                self.balance += realised_pl(units, entry, exit_, rate)
            self._entry_spread[data] = pending + bit.openedcomm - opened * bit.price * fraction

    def submit(self, order, check=True):
        if self._owner is None and order.owner is not None:
            self._owner = order.owner
        return super().submit(order, check)

    def _positions(self) -> dict:
        return {d: p for d, p in self.positions.items() if p.size}

    def account_state(self, when) -> tuple[float, float]:
        """(NAV, margin used) at ``when`` in the account currency, as the simulator reports them.

        Positions are valued at the side they would close on (mid less the exit cost per unit)
        against the entry as filled (backtrader's mid entry plus the spread waiting in
        ``_entry_spread``), all at the rate of ``when``: the simulator's units x (bid or ask - fill price).
        """
        nav, used = self.balance, 0.0
        rules, account = self.rules, self.rules.account_currency
        t = _ns(when)  # every bar with a position comes here: one bar lookup per symbol serves all
        for data, pos in self.positions.items():
            size = pos.size
            if not size:
                continue
            symbol = data._name
            i, mid = rules.prices.locate(symbol, t)
            exit_price = mid - (1 if size > 0 else -1) * rules.exit_cost(symbol, size, t, i)
            quote = symbol[4:]
            rate = 1.0 if quote == account else rules.prices.conversion(quote, account, t)
            nav += (size * (exit_price - pos.price) - self._entry_spread.get(data, 0.0)) * rate
            used += abs(size) * mid * rate * rules.margin_rate_of(symbol, when)
        return nav, used

    # --- the bar ------------------------------------------------------------------------------
    def next(self):
        now = self._now()
        used = 0.0
        if now is not None:
            self._roll_over(now)
            used = self._check_closeout(now)
        self._filled = False
        super().next()
        if now is not None:
            if self._filled:  # the margin changed with the fills at this open
                used = self.account_state(now)[1] if self._positions() else 0.0
            if used != self._last_used:
                self.margin_used[now] = used
                self._last_used = used

    def _roll_over(self, now: int) -> None:
        if self._roll_next is None:  # the first bar: rollovers before it found the account flat
            self._roll_next = int(np.searchsorted(self._roll_ns, now, side="right"))
            return
        k = self._roll_next
        while k < len(self._roll_ns) and self._roll_ns[k] <= now:
            if self.rules.financing:
                self._charge(int(self._roll_ns[k]), int(self._roll_weekday[k]))
            k += 1
        self._roll_next = k

    def _charge(self, ts: int, weekday: int) -> None:
        for data, pos in self._positions().items():
            terms = self.rules.terms(data._name, ts)
            if terms is None or not terms.days_on(weekday):
                continue
            price = self.rules.prices.mid(data._name, ts)
            quote_amount = terms.charge(pos.size, price, weekday)
            rate = self.rules.prices.conversion(self._quote(data._name), self.rules.account_currency, ts)
            self.balance += quote_amount * rate
            self._version += 1
            self.financing_entries.append({
                "ts": pd.Timestamp(ts, tz="UTC"), "instrument": data._name, "units": pos.size, "price": price,
                "annual_rate": terms.rate_for(pos.size), "days": terms.days_on(weekday),
                "amount_quote": quote_amount, "fx_rate": rate, "amount": quote_amount * rate})

    def _safe_band(self) -> tuple:
        """(version, data, symbol, low, high, |units|, margin rate, inverted) for the account as it is now.

        While one position is open and the account does not change, the NAV minus half the margin
        used is, bar by bar, ``A x mid - N`` (no conversion) or ``A - N / mid`` (the pair converts its
        own quote currency, e.g. GBP_USD in a GBP account), with N largest at the worst exit cost
        of the data. So no closeout is possible while the mid stays strictly inside (low, high),
        computed once per change; a bar outside it (or any other account) takes the exact check.
        """
        none = (self._version, None, None, 0.0, 0.0, 0.0, 0.0, False)
        positions = self._positions()
        if len(positions) != 1:
            return none
        (data, pos), = positions.items()
        rules, account, symbol = self.rules, self.rules.account_currency, data._name
        quote = self._quote(symbol)
        if quote == account:
            inverted = False
        elif rules.prices.legs(quote, account) == [(symbol, True)]:
            inverted = True
        else:
            return none
        rows = rules.schedule.terms.get(symbol, ())
        if len(rows) > 1:  # margin rate changes over time
            return none
        margin_rate = rules.margin_rate_of(symbol, 0)
        size, avg, spread = pos.size, pos.price, self._entry_spread.get(data, 0.0)
        cost = rules.worst_exit_cost(symbol, size)
        if not math.isfinite(cost):
            return none
        units = abs(size)
        if inverted:  # NAV - used/2 = (balance + size - |size| x mr / 2) - (|size| x cost + size x avg + spread) / mid
            a, n = self.balance + size - units * margin_rate / 2, units * cost + size * avg + spread
        else:  # NAV - used/2 = (size - |size| x mr / 2) x mid - (|size| x cost + size x avg + spread - balance)
            a, n = size - units * margin_rate / 2, units * cost + size * avg + spread - self.balance
        # safe where a x mid - n > tol (mid > 0): tol is a billionth of the amounts the exact check adds up,
        # far above its rounding, so a bar in the band can never be one the exact check would close out
        tol = 1e-9 * (abs(self.balance) + units * (abs(avg) + abs(cost) + 1.0) + abs(spread))
        n += tol
        if a > 0:
            low, high = max(n / a, 0.0), math.inf
        elif a < 0:
            low, high = 0.0, n / a
        else:
            low, high = (0.0, math.inf) if n < 0 else (0.0, 0.0)
        return (self._version, data, symbol, low, high, units, margin_rate, inverted)

    def _check_closeout(self, now: int) -> float:
        """Close everything out if the NAV is at or below half the margin used; return the margin used."""
        band = self._band
        if band is None or band[0] != self._version:
            band = self._band = self._safe_band()
        if band[1] is not None:
            prices = self.rules.prices
            i = prices.index(band[2], now)  # Prices.locate, inlined: this runs on every bar
            times, opens, closes = prices._columns(band[2])
            mid = (opens[i] if now < times[i] + prices.step.value else closes[i]) if i >= 0 else None
            if mid is not None and band[3] < mid < band[4]:  # no closeout possible: the margin used only
                rate = 1.0 / mid if band[7] else 1.0  # as account_state computes it, to the last bit
                return band[5] * mid * rate * band[6]
        positions = self._positions()
        if not positions:
            return 0.0
        nav, used = self.account_state(now)
        if nav > used / 2 or any(o.alive() and o.ref in self._closeout_refs for o in self.pending):
            return used
        self.margin_events.append({"ts": pd.Timestamp(now, tz="UTC"), "rule": "MARGIN_CLOSEOUT",
                                   "instrument": ",".join(sorted(d._name for d in positions)),
                                   "detail": f"NAV {nav:.2f} <= half the margin used {used:.2f}",
                                   "action": "closed every position"})
        for data, pos in positions.items():
            make = self.sell if pos.size > 0 else self.buy
            order = make(self._owner, data, abs(pos.size), exectype=bt.Order.Market, _checksubmit=False)
            # backtrader fills a market order from the bar after its creation; this one fills at this open
            order.created.dt = data.datetime[0] - 1e-9
            self._closeout_refs.add(order.ref)
        return used

    # --- OANDA's margin check instead of backtrader's cash check --------------------------------
    def check_submitted(self):
        pending: dict = {}
        while self.submitted:
            order = self.submitted.popleft()
            if self._take_children(order) is None:
                continue
            now = bt_ns(order.data.datetime[0])
            units = order.size if order.isbuy() else -abs(order.size)
            if self._margin_ok(order.data, units, now, pending):
                pending[order.data] = pending.get(order.data, 0.0) + units
                self.submit_accept(order)
                continue
            nav, used = self.account_state(now)
            self.margin_events.append({"ts": pd.Timestamp(now, tz="UTC"), "rule": "INSUFFICIENT_MARGIN",
                                       "instrument": order.data._name,
                                       "detail": f"{units:+.0f} units need more margin than the "
                                                 f"{max(nav - used, 0):.2f} {self.rules.account_currency} available",
                                       "action": "order rejected"})
            order.margin()
            self.notify(order)
            self._ococheck(order)
            self._bracketize(order, cancel=True)

    def _margin_ok(self, data, units: float, when: int, pending: dict) -> bool:
        """The simulator's rule: margin used after the fill (at the mid) stays within the NAV."""
        held = self.positions[data].size + pending.get(data, 0.0)
        opposite = abs(held) if held * units < 0 else 0.0
        opened = max(0.0, abs(units) - opposite)
        if opened == 0:
            return True
        mid = self.rules.prices.mid(data._name, when)
        per_unit = self._to_account(data._name, mid, when) * self.rules.margin_rate_of(data._name, when)
        nav, used = self.account_state(when)
        for other, extra in pending.items():  # orders accepted earlier in this bar
            used += abs(extra) * self._to_account(other._name, self.rules.prices.mid(other._name, when), when) * \
                self.rules.margin_rate_of(other._name, when)
        used -= min(abs(units), opposite) * per_unit
        return used + opened * per_unit <= nav


    def margin_series(self, index: pd.DatetimeIndex) -> np.ndarray:
        """The margin used at each of ``index``'s bars (the last change at or before it; 0 before any)."""
        if not self.margin_used:
            return np.zeros(len(index))
        keys = np.fromiter(self.margin_used.keys(), dtype="int64")
        values = np.fromiter(self.margin_used.values(), dtype="float64")
        order = np.argsort(keys, kind="stable")
        stamps = pd.DatetimeIndex(index).round("s").as_unit("ns").asi8
        pos = np.searchsorted(keys[order], stamps, side="right") - 1
        return np.where(pos >= 0, values[order][np.clip(pos, 0, None)], 0.0)


class OandaBroker(OandaAccountMixin, bt.brokers.BackBroker):
    """backtrader's broker keeping an OANDA account next to it."""


def book_financing(equity: pd.DataFrame, trades: pd.DataFrame, entries: list[dict]) -> None:
    """Add the financing to the equity curve (from each rollover on) and to the trades it fell in."""
    trades["financing"] = 0.0
    if not entries:
        return
    frame = pd.DataFrame(entries)
    stamps = pd.DatetimeIndex(equity.index).round("s")
    cumulative = frame["amount"].cumsum().to_numpy()
    pos = np.searchsorted(pd.DatetimeIndex(frame["ts"]).as_unit("ns").asi8, stamps.as_unit("ns").asi8,
                          side="right") - 1
    booked = np.where(pos >= 0, cumulative[np.clip(pos, 0, None)], 0.0)
    equity["cash"] = equity["cash"] + booked
    equity["value"] = equity["value"] + booked
    if len(trades):
        entry = pd.DatetimeIndex(trades["entry_ts"]).round("s")
        exit_ = pd.DatetimeIndex(trades["exit_ts"]).round("s")
        amounts = np.zeros(len(trades))
        for row in frame.itertuples(index=False):
            held = (trades["instrument"].to_numpy() == row.instrument) & (entry < row.ts) & \
                   (trades["is_open"].to_numpy(dtype=bool) | (exit_ >= row.ts))
            amounts[np.flatnonzero(held)[:1]] += row.amount  # netting: one trade holds the position
        trades["financing"] = amounts
