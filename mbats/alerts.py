"""Operator alerts: fills, risk events, kill switch trips, run and DAG failures, a daily summary.

Delivery goes through apprise, so one setting reaches Telegram, Slack, e-mail, Discord, ntfy or any
webhook: ``MBATS_ALERT_URLS="tgram://bot/chat slack://T/B/C json://host:8000/hook"``. The URLs
carry tokens: they are a secret, logged only as host + hash (also in apprise's own log lines).

The older ``MBATS_LIVE_RISK_WEBHOOK_URL`` / ``--risk-webhook`` is absorbed here as one more
target: it still receives each risk breach as the same JSON body as before, so existing receivers
keep working.

Alerts never break trading: a bad URL, a receiver that is down or slow is logged, never raised,
and a session sends from a background thread so a slow receiver never delays an order.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from mbats.redact import redact, url_ref

log = logging.getLogger(__name__)

EVENTS = ("fill", "risk", "kill_switch", "run_failed", "dag_failed", "summary", "control")
LEVELS = ("info", "success", "warning", "failure")


@dataclass
class Alert:
    event: str  # one of EVENTS
    title: str
    body: str
    level: str = "info"  # one of LEVELS (apprise's notify type)
    data: dict = field(default_factory=dict)  # the legacy risk webhook's JSON body (risk events only)


def parse_urls(text: str | None) -> list[str]:
    """Apprise URLs from a setting: separated by spaces, commas or new lines."""
    return [u for u in re.split(r"[\s,]+", text or "") if u]


def parse_events(text: str | None) -> set[str]:
    return {e.strip() for e in (text or "").split(",") if e.strip()}


class _Redact(logging.Filter):
    """Rewrites apprise's log records so no alert URL (token) reaches a log (one filter, every URL seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = redact(record.getMessage(), *self.secrets), None
        except Exception:  # noqa: BLE001 - a log line must never fail
            pass
        return True


_REDACT = _Redact()


class Alerter:
    """Sends alerts to the configured targets; ``background=True`` queues them for a sender thread."""

    def __init__(self, urls: Iterable[str] = (), events: Iterable[str] = EVENTS, risk_webhook: str | None = None,
                 background: bool = False) -> None:
        self.urls = list(urls)
        self.events = set(events)
        self.risk_webhook = risk_webhook
        self.background = background
        self._apprise = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0

    @classmethod
    def from_settings(cls, settings=None, risk_webhook: str | None = None, background: bool = False) -> "Alerter":
        from mbats.config import get_settings

        settings = settings or get_settings()
        urls = parse_urls(settings.alert_urls.get_secret_value() if settings.alert_urls else None)
        if risk_webhook is None and settings.live_risk_webhook_url:
            risk_webhook = settings.live_risk_webhook_url.get_secret_value()
        return cls(urls, parse_events(settings.alert_events), risk_webhook, background)

    @property
    def enabled(self) -> bool:
        return bool(self.urls or self.risk_webhook)

    def public(self) -> dict:
        """The targets as they may be stored: host and hash only."""
        return {"urls": [url_ref(u) for u in self.urls], "events": sorted(self.events),
                "risk_webhook": url_ref(self.risk_webhook)}

    # --- sending --------------------------------------------------------------------------------
    def send(self, alert: Alert) -> None:
        """Deliver now, or queue for the sender thread; never raises."""
        if not self.enabled:
            return
        if not self.background:
            self.deliver(alert)
            return
        if self._thread is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._run, name="mbats-alerts", daemon=True)
            self._thread.start()
        self._queue.put(alert)

    def notify(self, event: str, title: str, body: str, level: str = "info", **data) -> None:
        self.send(Alert(event, title, body, level, data))

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is not None:
                    self.deliver(alert)
            finally:
                self._queue.task_done()
            if alert is None:
                return

    def flush(self, timeout: float = 30.0) -> None:
        """Wait (at most ``timeout`` s) until queued alerts are sent; the session calls it at its end."""
        if self._thread is None:
            return
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        if not done.wait(timeout):
            log.warning("alerts: %d alert(s) still unsent after %.0f s", self._queue.qsize(), timeout)

    def deliver(self, alert: Alert) -> bool:
        """Send one alert to every target now; True if all took it. Failures are logged, not raised."""
        ok = True
        if self.risk_webhook and alert.event in ("risk", "kill_switch") and alert.data:
            ok &= self._post_webhook(alert.data)
        if self.urls and alert.event in self.events:
            ok &= self._apprise_notify(alert)
        self.sent += ok
        self.failed += not ok
        return ok

    def _apprise_notify(self, alert: Alert) -> bool:
        try:
            ap = self._apprise_object()
            if ap is None:
                return False
            result = ap.notify(title=alert.title, body=alert.body, notify_type=alert.level
                               if alert.level in LEVELS else "info")
            if not result:
                log.error("alert %r could not be delivered to every target (%s)", alert.title,
                          ", ".join(filter(None, map(url_ref, self.urls))))
            return bool(result)
        except Exception as exc:  # noqa: BLE001 - alerts must never break trading
            log.error("alert %r failed: %s", alert.title, redact(f"{type(exc).__name__}: {exc}", *self.urls))
            return False

    def _apprise_object(self):
        if self._apprise is None:
            import apprise  # ~1-4 s to load its plugins: only when an alert is sent

            _REDACT.secrets.extend(u for u in self.urls if u not in _REDACT.secrets)
            logging.getLogger("apprise").addFilter(_REDACT)  # a no-op when already added
            ap = apprise.Apprise()
            for url in self.urls:
                if not ap.add(url):
                    log.error("alert URL %s is not an apprise URL; skipped", url_ref(url))
            self._apprise = ap
        return self._apprise if len(self._apprise) else None

    def _post_webhook(self, payload: dict) -> bool:
        """The legacy risk webhook: the breach as JSON, three tries."""
        import requests
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

        @retry(retry=retry_if_exception_type(requests.RequestException), stop=stop_after_attempt(3),
               wait=wait_fixed(0.2), reraise=True)
        def post() -> None:
            requests.post(self.risk_webhook, json=payload, timeout=5).raise_for_status()

        try:
            post()
            return True
        except Exception as exc:  # noqa: BLE001 - a webhook that is down must not stop risk handling
            log.error("risk webhook %s failed: %s", url_ref(self.risk_webhook), redact(str(exc), self.risk_webhook))
            return False


# --- the messages --------------------------------------------------------------------------------
def fill_alert(run_id: int | None, mode: str, instrument: str, units: float, price: float, fill_id) -> Alert:
    side = "bought" if units > 0 else "sold"
    return Alert("fill", f"MBATS {mode} fill: {instrument} {units:+,.0f} @ {price:g}",
                 f"Run {run_id} {side} {abs(units):,.0f} {instrument} at {price:g} (OANDA fill {fill_id}).")


def breach_alert(breach, run_id: int | None) -> Alert:
    """A risk breach; the daily-loss breach that trips the kill switch is a ``kill_switch`` alert."""
    tripped = breach.action == "kill_switch"
    event = "kill_switch" if tripped else "risk"
    title = (f"MBATS kill switch tripped (run {run_id})" if tripped
             else f"MBATS risk {breach.rule} {breach.action} (run {run_id})")
    payload = {"source": "mbats.live", "rule": breach.rule, "instrument": breach.instrument,
               "detail": breach.detail, "action": breach.action, "ts": breach.ts.isoformat(), "run_id": run_id}
    return Alert(event, title, f"{breach.rule} on {breach.instrument or 'the account'}: {breach.detail}",
                 "failure" if tripped else "warning", payload)


def run_failed_alert(run_id: int | None, what: str, error: str) -> Alert:
    return Alert("run_failed", f"MBATS run {run_id} failed ({what})", error, "failure")


def dag_failed_alert(dag_id: str, task_id: str, run_id: str, error: str, log_url: str | None = None) -> Alert:
    body = f"Task {task_id} of DAG {dag_id} (run {run_id}) failed: {error}"
    if log_url:
        body += f"\nLog: {log_url}"
    return Alert("dag_failed", f"MBATS Airflow task failed: {dag_id}.{task_id}", body, "failure")


def airflow_failure_callback(context: dict) -> None:
    """``on_failure_callback`` of the DAGs: one ``dag_failed`` alert per failed task; never raises."""
    try:
        ti = context.get("task_instance") or context.get("ti")
        dag_run = context.get("dag_run")
        exc = context.get("exception")
        alert = dag_failed_alert(getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?"),
                                 getattr(dag_run, "run_id", "?"), f"{type(exc).__name__}: {exc}" if exc else "failed",
                                 getattr(ti, "log_url", None))
        Alerter.from_settings().send(alert)
    except Exception as exc:  # noqa: BLE001 - a callback that raises hides the task's own failure
        log.error("DAG failure alert not sent: %s", exc)


# --- the daily summary ------------------------------------------------------------------------------
def daily_summary(conn, day) -> dict:
    """The paper/live day in numbers from the risk DB: sessions, fills, realised P&L, risk events, failures,
    tripped kill switches and the end-of-day VaR/CVaR (when the eod_risk batch ran)."""
    import datetime as dt

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=1)
    with conn.cursor() as cur:
        cur.execute("SELECT id, strategy, mode, status, error FROM runs WHERE run_type IN ('paper', 'live') "
                    "AND started_at < %s AND (finished_at IS NULL OR finished_at >= %s) ORDER BY id", (end, start))
        runs = [dict(zip(("run_id", "strategy", "mode", "status", "error"), r)) for r in cur.fetchall()]
        ids = [r["run_id"] for r in runs] or [-1]
        cur.execute("SELECT count(*) FROM fills WHERE run_id = ANY(%s) AND ts >= %s AND ts < %s", (ids, start, end))
        fills = cur.fetchone()[0]
        cur.execute("SELECT count(*), coalesce(sum(pnl_net), 0) FROM trades WHERE run_id = ANY(%s) AND NOT is_open "
                    "AND exit_ts >= %s AND exit_ts < %s", (ids, start, end))
        closed, realised = cur.fetchone()
        cur.execute("SELECT rule, count(*) FROM risk_events WHERE run_id = ANY(%s) AND ts >= %s AND ts < %s "
                    "GROUP BY rule ORDER BY rule", (ids, start, end))
        events = dict(cur.fetchall())
        cur.execute("SELECT account_key, reason FROM live_kill_switch WHERE tripped ORDER BY account_key")
        tripped = [{"account_key": k, "reason": r} for k, r in cur.fetchall()]
        cur.execute("SELECT kind || ':' || name, value FROM eod_risk WHERE as_of = %s AND scope = 'portfolio' "
                    "AND kind IN ('var', 'cvar') ORDER BY 1", (day,))
        var = dict(cur.fetchall())
    if not conn.autocommit:
        conn.rollback()
    return {"day": day.isoformat(), "sessions": runs, "fills": fills, "closed_trades": closed,
            "realised_pnl": float(realised), "risk_events": events, "kill_switches_tripped": tripped,
            "failed_runs": [r["run_id"] for r in runs if r["status"] == "failed"], "eod_risk": var}


def summary_alert(summary: dict) -> Alert:
    runs = ", ".join(f"#{r['run_id']} {r['strategy']} {r['mode']} {r['status']}" for r in summary["sessions"])
    lines = [f"Sessions: {len(summary['sessions'])} ({runs or 'none'})",
             f"Fills: {summary['fills']}; closed trades: {summary['closed_trades']}; "
             f"realised P&L: {summary['realised_pnl']:,.2f}",
             "Risk events: " + (", ".join(f"{k} ×{v}" for k, v in summary["risk_events"].items()) or "none")]
    if summary["failed_runs"]:
        lines.append("Failed runs: " + ", ".join(map(str, summary["failed_runs"])))
    if summary["kill_switches_tripped"]:
        lines.append("Kill switch TRIPPED: " + ", ".join(k["account_key"] for k in summary["kill_switches_tripped"]))
    if summary["eod_risk"]:
        lines.append("EOD risk: " + ", ".join(f"{k} {v:,.2f}" for k, v in summary["eod_risk"].items()))
    bad = summary["failed_runs"] or summary["kill_switches_tripped"]
    return Alert("summary", f"MBATS daily summary {summary['day']}", "\n".join(lines), "warning" if bad else "info")


def send_daily_summary(day=None, settings=None) -> dict:
    """Compute the summary of ``day`` (default: yesterday, UTC) and send it; → the summary and whether it went."""
    import datetime as dt

    from mbats.db import connect

    day = day or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
    conn = connect("risk")
    try:
        summary = daily_summary(conn, day)
    finally:
        conn.close()
    alerter = Alerter.from_settings(settings)
    summary["sent"] = alerter.deliver(summary_alert(summary)) if alerter.urls else False
    return summary
