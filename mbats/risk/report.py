"""Per-run artifacts people would rather look at than read: an equity/drawdown plot and an HTML tear sheet
(interactive charts from :mod:`mbats.risk.tearsheet`, self-contained: no network needed to view it)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from mbats.config import get_settings
from mbats.risk.metrics import FX_DAY_END_HOUR, FX_DAY_TZ, FX_DAYS_PER_YEAR, METRIC_DESCRIPTIONS, MONEY_METRICS

MAX_TRADES_IN_REPORT = 500
ANNUALISATION_NOTE = (f"Return ratios use daily returns over FX days ({FX_DAY_END_HOUR}:00 {FX_DAY_TZ} boundary, "
                      f"5 a week), annualised with {FX_DAYS_PER_YEAR} FX days a year.")


def plot_equity(equity: pd.DataFrame, title: str, path: Path, currency: str = "USD") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: never try to open a window
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 1])
    top.plot(equity.index, equity["value"], color="#1f5fbf", linewidth=1)
    top.set_ylabel(f"account value ({currency})")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.fill_between(equity.index, equity["drawdown_pct"], 0, color="#c0392b", alpha=0.5, linewidth=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.3f}"


def write_run_report(run_id: int, strategy: str, params: dict, spec, metrics: dict, trades: pd.DataFrame,
                     equity: pd.DataFrame, bars: dict[str, pd.DataFrame] | None = None,
                     path: Path | None = None) -> Path:
    """Write the run's tear sheet ``reports/run-<id>/report.html`` (or ``path``) and ``equity.png`` beside
    it; return the HTML path. ``bars`` (instrument -> OHLC) draw the price chart with the trades marked."""
    from mbats.risk import tearsheet

    out = path.parent if path is not None else get_settings().reports_dir / f"run-{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    currency = getattr(spec, "account_currency", "USD")  # every amount of the report is in it
    sheet = tearsheet.build(equity, trades, bars, list(spec.instruments), currency)
    png = plot_equity(equity, f"run {run_id} · {strategy} · {', '.join(spec.instruments)} {spec.granularity}",
                      out / "equity.png", currency)
    closed = trades[~trades["is_open"].astype(bool)] if len(trades) else trades
    by_instrument = []
    for instrument, group in (closed.groupby("instrument") if len(closed) else []):
        by_instrument.append({"instrument": instrument, "trades": len(group), "pnl_net": group["pnl_net"].sum(),
                              "win_rate": 100.0 * (group["pnl_net"] > 0).mean()})
    env = Environment(loader=PackageLoader("mbats.risk", "templates"), autoescape=select_autoescape())
    from mbats.kernel.version import code_version

    html = env.get_template("run_report.html.j2").render(
        run_id=run_id, strategy=strategy, params=params, instruments=spec.instruments, granularity=spec.granularity,
        data_from=equity.index[0] if len(equity) else "", data_to=equity.index[-1] if len(equity) else "",
        cash=spec.cash, currency=currency,
        broker=(f"account {currency}, commission {spec.commission:g}, "
                f"spread {spec.spread_pips:g} pips, slippage {getattr(spec, 'slippage_pips', 0.0):g} pips, "
                f"sizer {spec.sizer}"
                # financing (rollover) booked and the most margin used, when the run kept them
                + (f", financing {trades['financing'].sum():+,.2f}" if "financing" in trades and len(trades) else "")
                + (f", max margin used {equity['margin_used'].max():,.2f}" if "margin_used" in equity and len(equity)
                   else "")),
        metrics=[(f"{k} ({currency})" if k in MONEY_METRICS else k, _fmt(metrics.get(k)), METRIC_DESCRIPTIONS.get(k, ""))
                 for k in METRIC_DESCRIPTIONS],
        annualisation=ANNUALISATION_NOTE,
        plot_png=base64.b64encode(png.read_bytes()).decode(),
        by_instrument=by_instrument,
        trades=trades.head(MAX_TRADES_IN_REPORT).to_dict("records"),
        trades_total=len(trades), trades_truncated=len(trades) > MAX_TRADES_IN_REPORT,
        sheet=sheet, months=tearsheet.MONTHS,
        code_version=code_version(), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    path = path if path is not None else out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_report_from_db(run_id: int, path: Path | None = None) -> Path:
    """(Re)write a run's tear sheet from what the risk DB kept (trades, equity, settings, metrics) and the
    secmaster's bars over the run's range; ``path`` defaults to the run's report folder."""
    from types import SimpleNamespace

    from mbats.db import connect
    from mbats.errors import NotFoundError
    from mbats.kernel.trades import TRADE_COLUMNS
    from mbats.risk.store import get_run, read_frame
    from mbats.secmaster import read_bars

    conn = connect("risk")
    try:
        run = get_run(conn, run_id)
        trades = read_frame(conn, f"SELECT {', '.join(TRADE_COLUMNS)} FROM trades WHERE run_id = %s "
                                  "ORDER BY entry_ts, trade_ref", (run_id,))
        equity = read_frame(conn, "SELECT ts, cash, value, drawdown_pct, margin_used FROM equity WHERE run_id = %s "
                                  "ORDER BY ts", (run_id,)).set_index("ts")
    finally:
        conn.close()
    if equity.empty:
        raise NotFoundError(f"run {run_id} has no equity curve in the risk database: nothing to draw")
    for col in ("entry_ts", "exit_ts"):
        trades[col] = pd.to_datetime(trades[col], utc=True)
    trades["is_open"] = trades["is_open"].astype(bool)
    equity.index = pd.to_datetime(equity.index, utc=True)
    equity = equity.astype("float64")
    broker = run.get("broker") or {}
    instruments = list(run.get("instruments") or [])
    bars: dict[str, pd.DataFrame] = {}
    if run.get("granularity") and len(equity):
        conn = connect("secmaster")
        try:
            for symbol in instruments:
                try:  # end is exclusive: one second past the run's last bar
                    frame = read_bars(conn, symbol, run["granularity"], run.get("data_from") or equity.index[0],
                                      pd.Timestamp(run.get("data_to") or equity.index[-1]) + pd.Timedelta(seconds=1))
                except NotFoundError:  # an instrument no longer in the secmaster: the report has no price chart
                    continue
                if len(frame):
                    bars[symbol] = frame
        finally:
            conn.close()
    spec = SimpleNamespace(instruments=instruments, granularity=run.get("granularity"), cash=float(run.get("cash") or 0),
                           commission=float(broker.get("commission") or 0.0),
                           spread_pips=float(broker.get("spread_pips") or 0.0),
                           slippage_pips=float(broker.get("slippage_pips") or 0.0), sizer=broker.get("sizer", "n/a"),
                           account_currency=broker.get("account_currency") or "USD")
    metrics = {k: (float(v) if v is not None else None) for k, v in run["metrics"].items()}
    return write_run_report(run_id, run["strategy"], run.get("params") or {}, spec, metrics, trades, equity,
                            bars=bars, path=path)
