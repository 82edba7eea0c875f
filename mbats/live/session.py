"""One paper or live trading session: the backtest's strategy class on OANDA, until its window ends.

``run_session`` checks the mode and the credentials before anything is written, opens (or, for
the same ``session_key``, resumes) the run in the risk database, reconciles the account with it,
backfills warm-up bars, and runs backtrader on the live feed and broker until ``until`` /
``max_bars`` / the kill switch. It always returns: a scheduler retry of a session that died
resumes through the reconciliation.

Stopping: SIGTERM (``docker stop``, Celery) and SIGINT (Ctrl-C) end the session after the bar in
hand; positions and pending orders are left alone or flattened per ``MBATS_LIVE_ON_SIGNAL``
(``leave`` | ``flatten``); the run is marked ``stopped`` and :attr:`SessionResult.exit_code` is
128 + the signal (130, 143). A tripped kill switch also ends ``stopped`` (exit code 3), and a
start on an account whose kill switch is tripped is refused until it is reset. A runner that
died without a word (kill -9, OOM) leaves its run ``running``: the next start sweeps such runs
(their process is gone) to ``failed``.

Remote control: ``mbats live stop|flatten`` (or the ``trading_control`` DAG) write a row to the risk
DB's ``live_control`` table, which the session polls every couple of seconds (:mod:`.control`):
a stop ends it like SIGTERM with ``leave``; a flatten also closes its positions on the way out.

Alerts (:mod:`mbats.alerts`): every fill, risk breach, kill switch trip, operator stop and failure
is sent from a background thread; the queue is flushed before the session returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, replace
from datetime import datetime

import backtrader as bt
import pandas as pd
import oandapyV20.endpoints.accounts as accounts_ep

from mbats.config import Settings, get_settings
from mbats.errors import ConfigError, MbatsError
from mbats.kernel.limits import RiskLimits, RiskManager
from mbats.kernel.sizing import parse_sizer
from mbats.kernel.strategies import coerce_params, find_strategy, strategy_name
from mbats.kernel.version import code_version
from mbats.live.config import LiveConfig, check_mode
from mbats.risk.live import KillSwitchStore, LiveStore, account_key, sweep_stale_runs
from mbats.live.recorder import LiveRecorder
from mbats.live.signals import live_strategy
from mbats.secmaster.granularity import check_granularity
from mbats.venues.oanda.client import SIM_ENVIRONMENT, make_client
from mbats.venues.oanda.data import PriceHub, make_live_feed
from mbats.venues.oanda.execution import OandaBroker
from mbats.venues.oanda.reconcile import ReconcileReport, reconcile

log = logging.getLogger(__name__)


KILL_SWITCH_EXIT = 3


class KillSwitchTripped(MbatsError):
    """The account's kill switch is tripped: no session starts until it is reset."""

    exit_code = KILL_SWITCH_EXIT


@dataclass
class SessionResult:
    run_id: int
    status: str  # finished | stopped (kill switch, signal, drift)
    resumed: bool
    live_bars: int
    reconciliation: ReconcileReport
    breaches: list
    signal: int | None = None  # the signal that stopped the session
    stop_reason: str | None = None

    @property
    def exit_code(self) -> int:
        """0 for a session that ran its window or that an operator stopped (`mbats live stop|flatten`);
        128 + signal when stopped by one; 3 otherwise (kill switch, drift)."""
        if self.status == "finished" or (self.stop_reason or "").startswith("operator"):
            return 0
        return 128 + self.signal if self.signal else KILL_SWITCH_EXIT


class _Stopper:
    """SIGTERM / SIGINT → a graceful stop after the bar in hand (a second signal stops at once)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._stop = None
        self._old: dict = {}

    def install(self) -> "_Stopper":
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("%s received: stopping the session after the current bar", signal.Signals(signum).name)
        if self._stop is not None:
            self._stop()

    def on_stop(self, fn) -> None:
        self._stop = fn
        if self.signal is not None:
            fn()

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _settings_for(settings: Settings, account: str | None) -> Settings:
    return settings.model_copy(update={"oanda_account_id": account}) if account else settings


def run_session(strategy, instruments: list[str] | None = None, mode: str | None = None,
                params: dict | None = None, until: datetime | None = None, *, granularity: str | None = None,
                max_bars: int | None = None, warmup: int = 200, units: int = 10_000, session_key: str | None = None,
                model_alias: str | None = None, sim_step: bool = False, confirm_live: bool = False,
                risk: RiskLimits | None = None, account: str | None = None,
                settings: Settings | None = None) -> int:
    """Trade ``strategy`` on ``instruments`` until ``until`` (or ``max_bars`` live bars); return the run id.

    ``strategy`` may also be a deployment (``mbats.orchestration.deployments.Deployment``): its
    strategy, instruments, mode, params, granularity, account and model alias are used, and the
    session key defaults to the deployment name and ``until``.
    """
    if hasattr(strategy, "strategy") and hasattr(strategy, "instruments"):  # a Deployment
        dep = strategy
        strategy, instruments, mode = dep.strategy, list(dep.instruments), dep.mode
        params = dict(getattr(dep, "params", {}) or {}) | (params or {})
        granularity = granularity or getattr(dep, "granularity", None)
        model_alias = model_alias or getattr(dep, "model_alias", None)
        account = account or getattr(dep, "account", None)
        session_key = session_key or f"{dep.name}@{until.isoformat() if until else 'open'}"
    cfg = LiveConfig(strategy=strategy, instruments=[i.upper() for i in instruments or []], mode=mode or "paper",
                     params=params or {}, granularity=granularity or "M1", until=until, max_bars=max_bars,
                     warmup=warmup, units=units, session_key=session_key, model_alias=model_alias,
                     sim_step=sim_step, confirm_live=confirm_live,
                     track=bool((settings or get_settings()).mlflow_tracking_uri))  # the stack's DAG sessions
    result = run(cfg, risk=risk, settings=_settings_for(settings or get_settings(), account))
    if result.signal:  # recorded as `stopped`; now let the host (Airflow, Celery, a shell) act on the signal too
        signal.raise_signal(result.signal)
    return result.run_id


def run(cfg: LiveConfig, risk: RiskLimits | None = None, settings: Settings | None = None) -> SessionResult:
    settings = settings or get_settings()
    if not cfg.instruments:
        raise MbatsError("give at least one instrument (-i EUR_USD)")
    check_granularity(cfg.granularity)
    check_mode(settings, cfg.mode, cfg.confirm_live)
    if cfg.sim_step and settings.oanda_environment != SIM_ENVIRONMENT:
        raise ConfigError("--sim-step drives the simulator's clock; it needs MBATS_OANDA_ENVIRONMENT=sim")
    cls = find_strategy(cfg.strategy)
    params = coerce_params(cls, cfg.params)
    if cfg.model_alias and "model_uri" in params:
        params["model_uri"] = cfg.model_alias
    cfg = replace(cfg, risk=risk or RiskLimits.from_settings(settings))
    from mbats.alerts import Alerter, run_failed_alert

    alerter = Alerter.from_settings(settings, risk_webhook=cfg.risk.webhook_url or "", background=True)

    client = make_client(settings)
    account = client.require_account()
    summary = client.request(accounts_ep.AccountSummary(account))["account"]  # bad credentials stop here

    from mbats.db import connect

    store = LiveStore(connect("risk"))
    kill_state = KillSwitchStore(store.conn, account_key(settings))
    saved = kill_state.load()
    if saved["tripped"]:
        store.conn.close()
        raise KillSwitchTripped(
            f"the kill switch of account {account} tripped at {saved['tripped_at']:%Y-%m-%d %H:%M:%S %Z} "
            f"({saved['reason']}); trading stays stopped until `mbats live reset-kill-switch` is run")
    for run_id, why in sweep_stale_runs(store.conn):
        log.warning("run %s marked failed: %s", run_id, why)
    model_fields = cls.run_metadata(params) if hasattr(cls, "run_metadata") else {}
    if cfg.model_alias and not model_fields:
        model_fields = {"model_uri": cfg.model_alias}
    run_id, resumed = store.open_run(
        session_key=cfg.session_key, run_type=cfg.mode, mode=cfg.mode, strategy=strategy_name(cls), params=params,
        instruments=cfg.instruments, granularity=cfg.granularity, cash=float(summary["NAV"]),
        broker={"environment": settings.oanda_environment, "units": cfg.units, "risk": cfg.risk.public()},
        code_version=code_version(), account=account, **model_fields)
    stopper = _Stopper().install()
    try:
        store.note(process={"pid": os.getpid(), "host": socket.gethostname()}, account_key=kill_state.key)
        # the broker account's currency: every amount of the run (fills' P&L, financing, equity) is in it
        store.note(account_currency=summary.get("currency", "USD"))
        if not resumed:  # where a replay after a crash starts if nothing later was recorded
            store.note(start_transaction_id=str(summary.get("lastTransactionID", "")))
        return _trade(cfg, cls, params, client, settings, store, run_id, resumed, summary.get("currency", "USD"),
                      kill_state, stopper, alerter)
    except BaseException as exc:
        store.fail(f"{type(exc).__name__}: {exc}")  # on a fresh connection if this one is gone
        alerter.send(run_failed_alert(run_id, f"{cfg.mode} {strategy_name(cls)} {','.join(cfg.instruments)}",
                                      f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        stopper.restore()
        alerter.flush()
        try:
            store.conn.close()
        except Exception:  # noqa: BLE001 - a dead connection must not hide the session's own outcome
            pass


def _trade(cfg: LiveConfig, cls, params: dict, client, settings: Settings, store: LiveStore, run_id: int,
           resumed: bool, currency: str, kill_state: KillSwitchStore, stopper: _Stopper, alerter) -> SessionResult:
    from mbats.alerts import Alert, fill_alert
    from mbats.live.control import ControlPoller

    prefix = "mb" + hashlib.sha1(f"{cfg.session_key or run_id}:{run_id}".encode()).hexdigest()[:10]
    since = (store.noted("last_transaction_id") or store.noted("start_transaction_id")) if resumed else None
    report = reconcile(client, store, prefix, replay_since=since or None)
    risk = RiskManager(cfg.risk, currency, record=store.risk_event, state=kill_state, alerter=alerter)
    risk.run_id = run_id

    hub = PriceHub(client, cfg.instruments, cfg.granularity, sim_step=cfg.sim_step)
    # bars after the last one this run traded on are live; on a fresh start, everything backfilled is warm-up
    last = store.last_bar_ts() or store.noted("live_after") if resumed else None
    hub.live_after = pd.Timestamp(last).tz_convert("UTC") if last is not None else None
    if resumed:  # bars that closed while the runner was down are history, except the one it was on
        hub.downtime_is_history = True
        doing = store.noted("bar_in_progress")
        if doing and (hub.live_after is None or pd.Timestamp(doing) > hub.live_after):
            hub.in_flight = pd.Timestamp(doing).tz_convert("UTC")
    hub.backfill(cfg.warmup)
    earlier_sources = store.data_sources() if resumed else []
    store.set_data_sources(earlier_sources + hub.data_sources())
    if hub.live_after is None:
        hub.live_after = max(b for b in hub.last_bar.values() if b is not None)
        store.note(live_after=hub.live_after.isoformat())

    cerebro = bt.Cerebro(stdstats=False, preload=False, runonce=False, exactbars=False, quicknotify=True)
    broker = OandaBroker(client=client, hub=hub, risk=risk, store=store, id_prefix=prefix)
    cerebro.setbroker(broker)
    broker.on_fill = lambda txn: alerter.send(fill_alert(run_id, cfg.mode, txn["instrument"], float(txn["units"]),
                                                         float(txn["price"]), txn["id"]))
    for name in cfg.instruments:
        cerebro.adddata(make_live_feed(hub, name, broker=broker, until=cfg.until, max_bars=cfg.max_bars))
    sizer_cls, sizer_kwargs = parse_sizer(f"fixed:units={cfg.units}")  # the kernel's sizer, as backtests size
    cerebro.addsizer(sizer_cls, **sizer_kwargs)
    cerebro.addstrategy(live_strategy(cls), **params)

    status = {"value": "finished", "reason": None}

    def stop(reason: str) -> None:
        status.update(value="stopped", reason=status["reason"] or reason)
        hub.stopped.set()
        cerebro.runstop()

    def kill() -> None:
        log.error("kill switch: flattening the account and stopping run %s", run_id)
        broker.flatten()
        stop("kill switch")

    bars_seen = {"n": 0}

    def on_bar() -> None:
        """Before the strategy sees a bar: the daily-loss check, then (every N bars) the drift check."""
        live = [d for d in broker.datas.values() if len(d) and getattr(d, "bar_is_live", False)]
        if not live or status["value"] != "finished":
            return
        ts = max(pd.Timestamp(bt.num2date(d.datetime[0]), tz="UTC") for d in live)
        store.note(bar_in_progress=ts.isoformat())  # a restart re-decides this bar only if it dies on it
        store.set_data_sources(earlier_sources + hub.data_sources())  # kept current: a runner may die any time
        if risk.check_daily_loss(broker.getvalue(), ts.to_pydatetime()) is not None:
            kill()
            return
        bars_seen["n"] += 1
        every = settings.live_drift_check_bars
        if every and bars_seen["n"] % every == 0:
            drift = broker.check_drift(settings.live_drift_tolerance_units)
            if drift is not None:
                stop(f"position drift: {drift}")

    broker.on_bar = on_bar
    stopper.on_stop(lambda: stop("signal"))
    cerebro.addanalyzer(LiveRecorder, _name="live", store=store, currency=currency, hub=hub)
    poller = ControlPoller(run_id, lambda command, who: stop(f"operator {command} ({who})"))
    hub.start()
    poller.start()
    try:
        strat = cerebro.run()[0]
        broker.deliver_notifications(strat)  # the last bar's fills: their trades reach the risk DB too
    finally:
        poller.stop()
        hub.stop()
        store.set_data_sources(earlier_sources + hub.data_sources())
    if hub.error is not None and stopper.signal is None:
        raise hub.error
    rec: LiveRecorder = strat.analyzers.live
    notes = {"live": {"reconnects": hub.stats.reconnects, "resumed": resumed, "id_prefix": prefix}}
    if stopper.signal is not None:
        action = settings.live_on_signal
        if action == "flatten":
            log.warning("flattening the account on %s (MBATS_LIVE_ON_SIGNAL=flatten)", signal.Signals(stopper.signal).name)
            broker.flatten()
        notes["stop"] = {"signal": signal.Signals(stopper.signal).name, "positions": action}
    if poller.command is not None:
        if poller.command == "flatten":
            log.warning("flattening the account: operator flatten (%s)", poller.requested_by)
            broker.flatten()
        notes["stop"] = {"operator": poller.command, "by": poller.requested_by,
                         "positions": "flatten" if poller.command == "flatten" else "leave"}
    if status["reason"]:
        notes.setdefault("stop", {})["reason"] = status["reason"]
    if status["value"] == "stopped" and status["reason"] != "kill switch":  # the kill switch sent its own alert
        alerter.send(Alert("control", f"MBATS run {run_id} stopped", f"{cfg.mode} session of {strategy_name(cls)} "
                           f"stopped: {status['reason']}", "warning"))
    store.note(**notes)
    store.finish(status["value"], rec.live_bars, rec.first_ts, rec.last_ts)
    if cfg.track:  # lineage in MLflow too (data sources, code version, model); never fails the session
        from mbats.tracking import log_session

        log_session(run_id)
    return SessionResult(run_id, status["value"], resumed, rec.live_bars, report, risk.breaches,
                         signal=stopper.signal, stop_reason=status["reason"])
