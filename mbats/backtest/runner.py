"""Run a strategy over security-master bars with backtrader and record the run.

:func:`simulate` is the pure part (bars in, recording out); :func:`run_backtest` adds the
platform around it: bars from the security master, the run in the risk database, metrics,
an HTML report and an MLflow run.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime

import backtrader as bt
import pandas as pd

from mbats.backtest.account import AccountRules, OandaAccountMixin, OandaBroker, Prices, book_financing
from mbats.backtest.feed import from_bt_datenum, make_feed
from mbats.backtest.recorder import Recorder, Recording
from mbats.errors import MbatsError, NotFoundError
from mbats.kernel import fx
from mbats.kernel.costs import FxCosts, fill_cost_per_unit, has_bid_ask, side_costs
from mbats.kernel.sizing import parse_sizer
from mbats.kernel.strategies import coerce_params, find_strategy, strategy_name
from mbats.kernel.trades import TRADE_COLUMNS, trades_fingerprint
from mbats.kernel.version import code_version
from mbats.risk.metrics import compute_metrics, drawdown
from mbats.secmaster.financing import Schedule
from mbats.kernel.timeframes import check_higher, declared_timeframes, feed_name
from mbats.kernel.timeframes import feed_bars as timeframe_feed_bars
from mbats.secmaster.granularity import check_granularity

log = logging.getLogger(__name__)


def _default_account_currency() -> str:
    from mbats.config import get_settings

    return get_settings().account_currency


@dataclass
class BacktestSpec:
    strategy: str
    instruments: list[str]
    granularity: str = "H1"
    start: datetime | None = None
    end: datetime | None = None
    params: dict[str, object] = field(default_factory=dict)
    cash: float = 100_000.0
    commission: float = 0.0       # fraction of notional per fill, e.g. 0.00002 = 0.2 bp
    spread_pips: float = 0.0      # full bid/ask spread; half is charged on every fill
    sizer: str = "fixed:units=10000"
    run_type: str = "backtest"
    sweep_id: str | None = None
    # P&L and costs are booked in this currency (MBATS_ACCOUNT_CURRENCY when not given); see mbats.kernel.fx
    account_currency: str = field(default_factory=lambda: _default_account_currency())
    slippage_pips: float = 0.0    # every fill is this many pips worse than its price (fixed; 0: off)
    # Pre-trade limits as in live trading (None: off); blocked orders are Rejected and become risk_events
    max_units: float | None = None
    max_gross_exposure: float | None = None
    # Daily financing from the secmaster's rates (mbats.backtest.account); False: none booked (the sweep's
    # vectorised core cannot model it, so its runs say so). Margin rates apply either way.
    financing: bool = True

    def __post_init__(self) -> None:
        # Every way in (CLI, DAG conf, library) gets the same ranges: negative costs, zero cash or a
        # percent sizer of 500 never start a run. Strategy parameters are checked by coerce_params.
        from mbats.specs import BacktestRequest, check

        check(BacktestRequest, {f: getattr(self, f) for f in BacktestRequest.model_fields})


@dataclass
class Simulation:
    recording: Recording
    open_trades: list[dict]
    positions: list[dict]
    equity: pd.DataFrame
    trades: pd.DataFrame
    params: dict[str, object]
    bars: int
    seconds: float
    risk_events: list[dict] = field(default_factory=list)  # orders the pre-trade limits blocked
    financing: list[dict] = field(default_factory=list)  # one row per position and rollover
    financing_note: str = "off"  # where the rates came from, or why financing is off


@dataclass
class BacktestResult:
    run_id: int | None
    strategy: str
    params: dict[str, object]
    instruments: list[str]
    granularity: str
    metrics: dict[str, float | None]
    trades: pd.DataFrame
    equity: pd.DataFrame
    bars: int
    seconds: float
    report_path: str | None = None
    mlflow_run_id: str | None = None
    risk_events: int = 0  # orders the pre-trade limits blocked

    def trades_hash(self) -> str:
        return trades_fingerprint(self.trades)


BID_ASK = "bid/ask candles"
MID_SPREAD = "mid + configured spread"


def price_sources(spec: BacktestSpec, bars: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Per instrument, what its fills are priced from (the run records it)."""
    return {s: BID_ASK if has_bid_ask(bars[s]) else MID_SPREAD for s in spec.instruments}


def simulate(spec: BacktestSpec, bars: dict[str, pd.DataFrame], strategy_cls: type[bt.Strategy] | None = None,
             schedule: Schedule | None = None) -> Simulation:
    """Run backtrader over in-memory bars; fills at the next bar's open, costs via :class:`FxCosts`.

    ``bars`` may hold more pairs than the run trades: those convert P&L into the account currency.
    ``schedule`` holds the financing/margin terms (:mod:`mbats.backtest.account`); without terms for
    every instrument there is no financing and margin is the account's 2 %.
    """
    rates = {s: fx.build_rate(fx.quote_currency(s), spec.account_currency, bars, spec.granularity)
             for s in spec.instruments}  # before the run: a missing conversion series fails fast
    cls = strategy_cls or find_strategy(spec.strategy)
    params = coerce_params(cls, spec.params)
    started = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    limited = _limited_broker(spec)
    broker = limited if limited is not None else OandaBroker()
    schedule = schedule or Schedule()
    missing = schedule.missing(spec.instruments) if spec.financing else list(spec.instruments)
    broker.setup_account(AccountRules(schedule, Prices(bars, _bar_step(spec.granularity)), spec.account_currency,
                                      {s: side_costs(spec, s, bars[s]) for s in spec.instruments},
                                      financing=not missing), spec.cash)
    cerebro.setbroker(broker)
    for symbol in spec.instruments:
        feed = cerebro.adddata(make_feed(symbol, spec.granularity, bars[symbol]))
        if has_bid_ask(bars[symbol]):
            buy, sell = side_costs(spec, symbol, bars[symbol])
            costs = FxCosts(half_spread=0.0, rate=spec.commission, data=feed, buy_costs=buy.tolist(),
                            sell_costs=sell.tolist())
        else:
            costs = FxCosts(half_spread=fill_cost_per_unit(spec, symbol), rate=spec.commission)
        cerebro.broker.addcommissioninfo(costs, name=symbol)
    for symbol, granularity, frame in higher_feeds(spec, bars, cls):  # after every base feed: data0 stays a base feed
        cerebro.adddata(make_feed(feed_name(symbol, granularity), granularity, frame))
    cerebro.broker.setcash(_backtrader_cash(spec, bars, rates))
    sizer_cls, sizer_kwargs = parse_sizer(spec.sizer)
    cerebro.addsizer(sizer_cls, **sizer_kwargs)
    cerebro.addstrategy(cls, **params)
    cerebro.addanalyzer(Recorder, _name="recorder")
    try:
        strategy = cerebro.run()[0]
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as exc:
        raise MbatsError(f"strategy {strategy_name(cls)} failed: {exc!r}") from exc
    recorder: Recorder = strategy.analyzers.recorder
    recording = recorder.get_analysis()

    stamps = from_bt_datenum([e[0] for e in recording.equity])
    equity = pd.DataFrame({"cash": [e[1] for e in recording.equity], "value": [e[2] for e in recording.equity]},
                          index=stamps.rename("ts"))
    equity = equity[~equity.index.duplicated(keep="last")]
    for row in recording.fills:
        row["ts"] = pd.Timestamp(row["ts"], tz="UTC")
    for row in recording.orders.values():
        row["created_at"] = pd.Timestamp(row["created_at"], tz="UTC")
        row["updated_at"] = pd.Timestamp(row["updated_at"], tz="UTC")
    open_trades = recorder.open_trades()
    trades = pd.DataFrame(recording.trades + open_trades, columns=TRADE_COLUMNS)
    for col in ("entry_ts", "exit_ts"):
        trades[col] = pd.to_datetime(trades[col]).dt.tz_localize("UTC")
    last_ts = equity.index[-1] if len(equity) else None
    positions = []
    for data in strategy.datas:
        pos = strategy.getposition(data)
        if pos.size:
            positions.append({"ts": last_ts, "instrument": data._name, "size": pos.size, "avg_price": pos.price,
                              "market_price": data.close[0], "unrealized_pnl": pos.size * (data.close[0] - pos.price)})
    if any(rate.legs for rate in rates.values()):  # otherwise backtrader's books are already in the account currency
        equity = fx.rebook(spec.cash, recording.fills, trades, equity, positions, bars, rates, spec.commission)
    book_financing(equity, trades, broker.financing_entries)
    equity["margin_used"] = broker.margin_series(equity.index)
    equity["drawdown_pct"] = drawdown(equity["value"])
    events = (limited.risk_events() if limited is not None else []) + broker.margin_events
    return Simulation(recording, open_trades, positions, equity, trades, params,
                      bars=sum(len(b) for b in bars.values()), seconds=time.perf_counter() - started,
                      risk_events=sorted(events, key=lambda e: e["ts"]), financing=broker.financing_entries,
                      financing_note=financing_note(schedule, spec.instruments, spec.financing))


def higher_feeds(spec: BacktestSpec, bars: dict[str, pd.DataFrame],
                 cls: type[bt.Strategy]) -> list[tuple[str, str, pd.DataFrame]]:
    """(instrument, granularity, bars) of the extra feeds a strategy declares with ``timeframes``.

    Resampled from the run's own base bars and stamped with the base bar at which each closed bar
    becomes visible (:mod:`mbats.kernel.timeframes`), so backtrader never shows an unfinished bar.
    """
    declared = declared_timeframes(cls)
    if not declared:
        return []
    for granularity in declared:
        check_higher(spec.granularity, granularity)
    return [(symbol, tf, timeframe_feed_bars(bars[symbol], tf)) for symbol in spec.instruments for tf in declared]


def _backtrader_cash(spec: BacktestSpec, bars: dict[str, pd.DataFrame], rates: dict[str, fx.Rate]) -> float:
    """backtrader's starting cash: the account's cash in the currency backtrader counts in.

    backtrader books each pair in its quote currency and refuses to open units when its cash would
    go below 0 (notional / leverage + costs). For a pair quoted outside the account currency its cash
    therefore starts as the account's cash in that quote currency (at the first rate), so its check
    and percent sizers see the account as OANDA's margin check does; a USD_JPY run would otherwise
    count 100,000 USD as 100,000 JPY and silently stop opening trades after ~700 USD of losses. The
    run's books come from :func:`mbats.kernel.fx.rebook` and the OANDA account, not from this cash.
    """
    for symbol in spec.instruments:
        rate = rates[symbol]
        if rate.legs:
            at = rate.opens.asof(bars[symbol].index[0])
            return spec.cash / float(rate.opens.iloc[0] if pd.isna(at) else at)
    return spec.cash


def financing_note(schedule: Schedule, instruments: list[str], wanted: bool = True) -> str:
    """What the run's financing comes from (the rates' sources), or why it is off."""
    if not wanted:
        return ("off: financing=False (sweeps: the vectorised core cannot model financing, so their runs "
                "leave it out); margin rates still apply")
    missing = schedule.missing(instruments)
    if missing:
        return f"off: no rates stored for {', '.join(missing)} (margin at the account's 2 %)"
    return "rates: " + ", ".join(sorted({r.source for s in instruments for r in schedule.terms[s.upper()]}))


def _bar_step(granularity: str) -> pd.Timedelta:
    from mbats.secmaster.granularity import GRANULARITIES

    step = GRANULARITIES[granularity]
    return step if isinstance(step, pd.Timedelta) else pd.Timedelta(days=7)  # W / M: never "in progress" at 17:00


def _limited_broker(spec: BacktestSpec):
    """backtrader's broker with the live pre-trade limits, when the run sets any."""
    if spec.max_units is None and spec.max_gross_exposure is None:
        return None
    from mbats.backtest.limits import LimitedBroker
    from mbats.kernel.limits import RiskLimits

    class LimitedOandaBroker(OandaAccountMixin, LimitedBroker):
        """The pre-trade limits first (transmit), OANDA's account rules when the order reaches the bar."""

    return LimitedOandaBroker(RiskLimits(max_units=spec.max_units, max_gross_exposure=spec.max_gross_exposure),
                         spec.account_currency)


def load_bars(spec: BacktestSpec) -> dict[str, pd.DataFrame]:
    from mbats.db import connect
    from mbats.secmaster import read_bars

    check_granularity(spec.granularity)
    conn = connect("secmaster")
    try:
        # bid/ask columns too where stored: fills then take the bar's own ask (buys) and bid (sells)
        bars = {s: read_bars(conn, s, spec.granularity, spec.start, spec.end, sides=True) for s in spec.instruments}
    finally:
        conn.close()
    for symbol, frame in bars.items():
        if frame.empty:
            raise NotFoundError(
                f"no {spec.granularity} bars for {symbol} in the requested range; "
                "see `mbats data list` for what is loaded"
            )
    bars.update(_conversion_bars(spec, bars))
    return bars


def _conversion_bars(spec: BacktestSpec, bars: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The stored pairs that can convert the run's quote currencies into its account currency.

    Read from a week before the start, so the first fill has a rate in force; pairs not stored are
    skipped here and named by :func:`mbats.kernel.fx.build_rate` if the run needs them.
    """
    from datetime import timedelta

    from mbats.db import connect
    from mbats.secmaster import read_bars

    wanted = [p for p in fx.needed_pairs(spec.instruments, spec.account_currency) if p not in bars]
    if not wanted:
        return {}
    start = spec.start - timedelta(days=7) if spec.start else None
    out: dict[str, pd.DataFrame] = {}
    conn = connect("secmaster")
    try:
        for pair in wanted:
            try:
                frame = read_bars(conn, pair, spec.granularity, start, spec.end)
            except NotFoundError:
                continue
            if len(frame):
                out[pair] = frame
    finally:
        conn.close()
    return out


def load_schedule(instruments: list[str]) -> Schedule:
    """The financing/margin terms stored for ``instruments`` (those with none are absent)."""
    from mbats.db import connect
    from mbats.secmaster.financing import read_schedule

    conn = connect("secmaster")
    try:
        return read_schedule(conn, instruments)
    finally:
        conn.close()


def data_sources(spec: BacktestSpec) -> list[dict]:
    """Where the bars of the run's range came from (per instrument and load), for runs.data_sources."""
    from mbats.db import connect
    from mbats.secmaster.loads import bar_sources

    conn = connect("secmaster")
    try:
        return [src for s in spec.instruments for src in bar_sources(conn, s, spec.granularity, spec.start, spec.end)]
    finally:
        conn.close()


def _prices_note(sources: dict[str, str]) -> str | dict[str, str]:
    kinds = set(sources.values())
    return kinds.pop() if len(kinds) == 1 else sources


def _alert_failure(run_id: int, spec: BacktestSpec, strategy: str, exc: Exception) -> None:
    """Announce a failed backtest through the configured alert targets (mbats.alerts); never raises."""
    try:
        from mbats.alerts import Alerter, run_failed_alert

        Alerter.from_settings().send(run_failed_alert(
            run_id, f"backtest {strategy} {','.join(spec.instruments)} {spec.granularity}",
            f"{type(exc).__name__}: {exc}"))
    except Exception as alert_exc:  # noqa: BLE001 - the backtest's own error is the one to report
        log.warning("run %s: the failure alert was not sent: %s", run_id, alert_exc)


def run_backtest(spec: BacktestSpec, *, track: bool = True, bars: dict[str, pd.DataFrame] | None = None,
                 write_report: bool = True, schedule: Schedule | None = None) -> BacktestResult:
    """Run, record in the risk database, write the report and log to MLflow."""
    from mbats.db import connect
    from mbats.risk import store

    if not spec.instruments:
        raise MbatsError("give at least one instrument")
    cls = find_strategy(spec.strategy)
    params = coerce_params(cls, spec.params)
    # A strategy trading on a registered model names it (model_uri, model_version) for the run row.
    model_fields = cls.run_metadata(params) if hasattr(cls, "run_metadata") else {}
    bars_from_db = bars is None
    bars = bars if bars is not None else load_bars(spec)
    for symbol in spec.instruments:  # a missing conversion series is a usage error, not a failed run
        fx.build_rate(fx.quote_currency(symbol), spec.account_currency, bars, spec.granularity)
    schedule = schedule if schedule is not None else load_schedule(spec.instruments)
    data_from = min(b.index[0] for b in bars.values())
    data_to = max(b.index[-1] for b in bars.values())
    conn = connect("risk")
    try:
        run_id = store.create_run(
            conn, run_type=spec.run_type, mode="backtest", strategy=strategy_name(cls),
            params=params, instruments=spec.instruments, granularity=spec.granularity,
            data_from=data_from, data_to=data_to, cash=spec.cash,
            broker={"commission": spec.commission, "spread_pips": spec.spread_pips, "sizer": spec.sizer,
                    "account_currency": spec.account_currency, "slippage_pips": spec.slippage_pips,
                    "risk_limits": {"max_units": spec.max_units, "max_gross_exposure": spec.max_gross_exposure},
                    "prices": _prices_note(price_sources(spec, bars)),
                    "financing": financing_note(schedule, spec.instruments, spec.financing),
                    # lets the stale-run sweep (`mbats live sweep-stale`) fail a run whose process died
                    "process": {"pid": os.getpid(), "host": socket.gethostname()}},
            code_version=code_version(), sweep_id=spec.sweep_id, **model_fields,
        )
        if bars_from_db:  # the provenance of exactly the bars this run read
            store.set_run_fields(conn, run_id, data_sources=store.Json(data_sources(spec)))
        try:
            sim = simulate(spec, bars, cls, schedule)
            metrics = compute_metrics(sim.equity["value"], sim.trades, sim.recording.bars,
                                      sim.recording.bars_in_market)
            store.merge_run_broker(conn, run_id, {  # what the account rules did, next to the settings
                "financing_total": round(float(sum(f["amount"] for f in sim.financing)), 6),
                "margin_used_max": round(float(sim.equity["margin_used"].max()), 6) if len(sim.equity) else 0.0})
            report_path = None
            if write_report:
                from mbats.risk.report import write_run_report

                report_path = str(write_run_report(run_id, strategy_name(cls), params, spec, metrics,
                                                   sim.trades, sim.equity, bars=bars))
            store.save_results(
                conn, run_id, orders=list(sim.recording.orders.values()), fills=sim.recording.fills,
                trades=sim.trades.to_dict("records"), positions=sim.positions, equity=sim.equity,
                metrics=metrics, bars=sim.bars, data_from=data_from, data_to=data_to, report_path=report_path,
                risk_events=sim.risk_events, financing=sim.financing,
            )
        except BaseException as exc:
            store.mark_failed(conn, run_id, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, Exception):  # Ctrl-C is the user's own doing: no alert
                _alert_failure(run_id, spec, strategy_name(cls), exc)
            raise
        result = BacktestResult(run_id, strategy_name(cls), params, spec.instruments, spec.granularity, metrics,
                                sim.trades, sim.equity, sim.bars, sim.seconds, report_path,
                                risk_events=len(sim.risk_events))
        if track:
            from mbats.tracking import log_backtest

            result.mlflow_run_id = log_backtest(result, spec)
            store.set_run_fields(conn, run_id, mlflow_run_id=result.mlflow_run_id)
        return result
    finally:
        conn.close()
