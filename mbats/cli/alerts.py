"""`mbats alerts …`: the daily summary and a test alert, through MBATS_ALERT_URLS (apprise)."""

from __future__ import annotations

import json

import typer

from mbats.cli.app import group

alerts_app = group("Alerts through apprise (MBATS_ALERT_URLS): daily summary, test message.")


@alerts_app.command("summary")
def summary_command(
    day: str = typer.Option(None, "--day", help="UTC day YYYY-MM-DD (default: yesterday)"),
    send: bool = typer.Option(True, "--send/--no-send", help="send it to MBATS_ALERT_URLS (default) or only print"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The paper/live day: sessions, fills, realised P&L, risk events, failures, kill switches, EOD VaR."""
    import datetime as dt

    from mbats.alerts import Alerter, daily_summary, summary_alert
    from mbats.db import connect
    from mbats.errors import UsageError

    try:
        when = dt.date.fromisoformat(day) if day else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    except ValueError:
        raise UsageError(f"--day: {day!r} is not a date YYYY-MM-DD") from None
    conn = connect("risk")
    try:
        summary = daily_summary(conn, when)
    finally:
        conn.close()
    alert = summary_alert(summary)
    alerter = Alerter.from_settings()
    summary["sent"] = alerter.deliver(alert) if send and alerter.urls else False
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        print(f"{alert.title}\n{alert.body}\n(sent: {'yes' if summary['sent'] else 'no'})")


@alerts_app.command("test")
def test_command() -> None:
    """Send a test alert to every MBATS_ALERT_URLS target; exit 1 if one did not take it."""
    from mbats.alerts import Alert, Alerter
    from mbats.errors import ConfigError, MbatsError

    alerter = Alerter.from_settings()
    if not alerter.urls:
        raise ConfigError("MBATS_ALERT_URLS is not set: nothing to send to")
    ok = alerter.deliver(Alert("control", "MBATS test alert", "If you read this, MBATS alerts reach you.", "info"))
    print(json.dumps({"sent": ok, "targets": alerter.public()["urls"]}))
    if not ok:
        raise MbatsError("at least one alert target did not take the test message (see the log line above)")
