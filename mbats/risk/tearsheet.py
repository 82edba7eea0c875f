"""The interactive part of a run's HTML report (the tear sheet), drawn with bokeh.

Every chart is a bokeh ``json_item`` written into the page as ``<script type="application/json">``
and embedded by bokeh's own JS, which is inlined (``Resources(mode="inline")``), so the file needs
no network when opened. Return series use the FX day of :mod:`mbats.risk.metrics` (17:00 New York),
the same days the run's Sharpe and volatility are computed on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mbats.risk.metrics import FX_DAYS_PER_YEAR, fx_daily, fx_day_labels

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ROLLING_WINDOW_DAYS = 63          # a quarter of FX days; shortened for short runs
MAX_PRICE_POINTS = 20_000         # longer series are thinned to their envelope (trade markers stay exact)
TOOLS = "pan,xwheel_zoom,box_zoom,reset,save"


@dataclass
class TearSheet:
    """What the report template needs: bokeh's inline JS/CSS, one JSON document per chart, the monthly table."""

    resources: str
    charts: dict[str, str] = field(default_factory=dict)        # section id -> json_item JSON (escaped for <script>)
    monthly: list[dict] = field(default_factory=list)           # one row per year: year, months[12], year_pct
    rolling_window: int = 0
    benchmark_note: str = ""


def envelope(values: np.ndarray, max_points: int = MAX_PRICE_POINTS) -> np.ndarray:
    """Positions to draw a long series with at most ~``max_points``: each chunk's first, lowest and
    highest point, so peaks and troughs (the deepest drawdown) survive the thinning."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    step = -(-3 * n // max_points)
    starts = np.arange(0, n, step)
    padded = np.full(len(starts) * step, np.nan)
    padded[:n] = values
    chunks = padded.reshape(len(starts), step)
    keep = np.concatenate([starts, starts + np.nanargmin(chunks, axis=1), starts + np.nanargmax(chunks, axis=1),
                           [n - 1]])
    return np.unique(keep)


def _ms(index) -> list[float]:
    """Epoch milliseconds (bokeh's datetime axis unit) as a plain list, so the JSON stays readable."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return (idx.as_unit("ns").asi8 / 1e6).tolist()


def fx_day_dates(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The calendar date of each timestamp's FX day."""
    return pd.to_datetime(fx_day_labels(index), unit="D")


def monthly_returns(values: pd.Series) -> pd.Series:
    """Return in % of each calendar month of FX days: last FX-day close of the month over the previous
    month's (the first month over the run's starting value). Indexed by ``Period[M]``."""
    values = values.dropna()
    if values.empty:
        return pd.Series(dtype="float64")
    daily = fx_daily(values)
    months = fx_day_dates(daily.index).to_period("M")
    month_end = pd.Series(daily.to_numpy(), index=months).groupby(level=0).last()
    previous = month_end.shift(1)
    previous.iloc[0] = float(values.iloc[0])
    return 100.0 * (month_end / previous - 1.0)


def monthly_table(values: pd.Series) -> list[dict]:
    """Rows ``{year, months: [(label, pct|None)]*12, year_pct}``; a year compounds its months."""
    returns = monthly_returns(values)
    rows = []
    for year in sorted({p.year for p in returns.index}):
        cells = []
        for m in range(1, 13):
            key = pd.Period(year=year, month=m, freq="M")
            cells.append((str(key), float(returns[key]) if key in returns.index else None))
        year_returns = [v for _, v in cells if v is not None]
        rows.append({"year": year, "months": cells,
                     "year_pct": 100.0 * (float(np.prod([1 + v / 100 for v in year_returns])) - 1.0)})
    return rows


def rolling_sharpe_vol(values: pd.Series, window: int) -> pd.DataFrame:
    """Annualised rolling Sharpe and volatility (%) of FX-day returns."""
    returns = fx_daily(values.dropna()).pct_change().dropna()
    roll = returns.rolling(window)
    mean, std = roll.mean(), roll.std()
    frame = pd.DataFrame({"sharpe": mean / std * math.sqrt(FX_DAYS_PER_YEAR),
                          "vol_pct": 100.0 * std * math.sqrt(FX_DAYS_PER_YEAR)})
    return frame.replace([np.inf, -np.inf], np.nan).dropna()


def net_position(trades: pd.DataFrame, index: pd.DatetimeIndex, instrument: str) -> pd.Series:
    """Net units held in ``instrument`` at each time of ``index`` (from entry until exit; open trades to the end)."""
    held = np.zeros(len(index))
    stamps = index.as_unit("ns").asi8
    for t in trades[trades["instrument"] == instrument].itertuples():
        units = abs(float(t.size)) * (1 if t.direction == "long" else -1)
        start = np.searchsorted(stamps, pd.Timestamp(t.entry_ts).as_unit("ns").value, "left")
        end = len(index) if pd.isna(t.exit_ts) else np.searchsorted(
            stamps, pd.Timestamp(t.exit_ts).as_unit("ns").value, "left")
        held[start:end] += units
    return pd.Series(held, index=index)


def trade_markers(trades: pd.DataFrame) -> dict[str, dict[str, list]]:
    """Entry and exit points of every trade (an open trade has only its entry), as chart columns."""
    entries = {"x": [], "y": [], "instrument": [], "direction": [], "trade": [], "when": []}
    exits = {"x": [], "y": [], "instrument": [], "direction": [], "trade": [], "when": [], "pnl": []}
    for t in trades.itertuples():
        entries["x"] += _ms([t.entry_ts])
        entries["y"].append(float(t.entry_price))
        entries["when"].append(str(t.entry_ts))
        for col in ("instrument", "direction"):
            entries[col].append(str(getattr(t, col)))
        entries["trade"].append(str(t.trade_ref))
        if not bool(t.is_open) and not pd.isna(t.exit_ts):
            exits["x"] += _ms([t.exit_ts])
            exits["y"].append(float(t.exit_price))
            exits["when"].append(str(t.exit_ts))
            for col in ("instrument", "direction"):
                exits[col].append(str(getattr(t, col)))
            exits["trade"].append(str(t.trade_ref))
            exits["pnl"].append(float(t.pnl_net))
    return {"entries": entries, "exits": exits}


def _item(fig, target: str) -> str:
    from bokeh.embed import json_item

    # "</" would end the <script> element holding the JSON
    return json.dumps(json_item(fig, target)).replace("</", "<\\/")


def build(equity: pd.DataFrame, trades: pd.DataFrame, bars: dict[str, pd.DataFrame] | None,
          instruments: list[str], currency: str) -> TearSheet:
    """All charts of the tear sheet for one run."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.resources import Resources

    # only bokeh's core library (1.3 MB): no widgets, tables, WebGL or MathJax bundles (4 MB with them)
    sheet = TearSheet(resources=Resources(mode="inline", components=["bokeh"]).render())
    values = equity["value"].dropna()
    if values.empty:
        return sheet
    full = values
    drawn = envelope((100.0 * (values / values.cummax() - 1.0)).to_numpy())  # keeps the troughs exact
    values = values.iloc[np.union1d(drawn, envelope(values.to_numpy()))]      # and the equity's peaks
    x = _ms(values.index)

    def timeline(title: str, y_label: str, height: int = 260):
        fig = figure(title=title, x_axis_type="datetime", height=height, sizing_mode="stretch_width", tools=TOOLS,
                     active_scroll="xwheel_zoom")
        fig.yaxis.axis_label = y_label
        return fig

    # price with every entry (triangle: up long, down short) and exit (x) of the run's trades
    bars = {s: b for s, b in (bars or {}).items() if s in instruments and len(b)}
    if bars:
        fig = timeline(f"price · {', '.join(bars)} · entries and exits", "price", 420)
        for symbol, frame in bars.items():
            close = frame["close"].iloc[envelope(frame["close"].to_numpy(dtype="float64"))]
            fig.line(_ms(close.index), close.to_numpy().tolist(), legend_label=f"{symbol} close", color="#5b6478")
        markers = trade_markers(trades)
        entries = ColumnDataSource(markers["entries"], name="trade_entries")
        exits = ColumnDataSource(markers["exits"], name="trade_exits")
        entry_glyph = fig.scatter("x", "y", source=entries, size=9, marker="triangle", color="#1f8f3a",
                                  legend_label="entry")
        exit_glyph = fig.scatter("x", "y", source=exits, size=9, marker="x", color="#c0392b", line_width=2,
                                 legend_label="exit")
        fig.add_tools(HoverTool(renderers=[entry_glyph], tooltips=[
            ("entry", "@instrument @direction"), ("trade", "@trade"), ("time", "@when"), ("price", "@y{0.00000}")]))
        fig.add_tools(HoverTool(renderers=[exit_glyph], tooltips=[
            ("exit", "@instrument @direction"), ("trade", "@trade"), ("time", "@when"), ("price", "@y{0.00000}"),
            (f"net P&L ({currency})", "@pnl{0,0.00}")]))
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        sheet.charts["price-chart"] = _item(fig, "price-chart-plot")

    # equity against buying and holding the instrument(s) with the same starting value
    from bokeh.models import NumeralTickFormatter

    fig = timeline(f"account value ({currency}) vs buy-and-hold", f"value ({currency})")
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
    fig.line(x, values.to_numpy().tolist(), color="#1f5fbf", legend_label="strategy")
    if bars:
        ratios = [b["close"].reindex(values.index, method="ffill").bfill() / float(b["close"].iloc[0])
                  for b in bars.values()]
        hold = float(values.iloc[0]) * pd.concat(ratios, axis=1).mean(axis=1)
        fig.line(x, hold.to_numpy().tolist(), color="#e08e0b", legend_label="buy-and-hold")
        sheet.benchmark_note = (f"Buy-and-hold: the starting value invested equally in {', '.join(bars)} at the "
                                "first close and held (price return; no costs, financing or conversion).")
    fig.legend.location = "top_left"
    sheet.charts["equity-chart"] = _item(fig, "equity-chart-plot")

    # underwater curve
    dd = (100.0 * (full / full.cummax() - 1.0)).iloc[full.index.get_indexer(values.index)].to_numpy().tolist()
    fig = timeline("underwater (drawdown below the running peak)", "drawdown %", 200)
    fig.varea(x=x, y1=dd, y2=[0.0] * len(dd), color="#c0392b", alpha=0.5)
    sheet.charts["underwater"] = _item(fig, "underwater-plot")

    # rolling Sharpe and volatility over FX days
    days = len(fx_daily(full))
    sheet.rolling_window = min(ROLLING_WINDOW_DAYS, max(5, days // 4))
    roll = rolling_sharpe_vol(full, sheet.rolling_window)
    fig = timeline(f"rolling {sheet.rolling_window}-FX-day Sharpe and volatility (annualised)", "Sharpe")
    if len(roll):
        from bokeh.models import LinearAxis, Range1d

        rx = _ms(roll.index)
        fig.line(rx, roll["sharpe"].tolist(), color="#1f5fbf", legend_label="Sharpe")
        top = float(roll["vol_pct"].max()) or 1.0
        fig.extra_y_ranges = {"vol": Range1d(0, top * 1.1)}
        fig.add_layout(LinearAxis(y_range_name="vol", axis_label="volatility %"), "right")
        fig.line(rx, roll["vol_pct"].tolist(), color="#e08e0b", y_range_name="vol", legend_label="volatility %")
        fig.legend.location = "top_left"
    sheet.charts["rolling"] = _item(fig, "rolling-plot")

    # distribution of closed trades' net P&L
    closed = trades[~trades["is_open"].astype(bool)] if len(trades) else trades
    pnl = closed["pnl_net"].astype(float).to_numpy() if len(closed) else np.array([])
    fig = figure(title=f"net P&L per closed trade ({len(pnl)} trades)", height=260, sizing_mode="stretch_width",
                 tools=TOOLS)
    fig.xaxis.axis_label = f"net P&L ({currency})"
    fig.yaxis.axis_label = "trades"
    if len(pnl):
        counts, edges = np.histogram(pnl, bins=min(40, max(5, len(pnl) // 3)))
        left, right = edges[:-1], edges[1:]
        fig.quad(left=left.tolist(), right=right.tolist(), bottom=0, top=counts.tolist(),
                 color=["#1f8f3a" if (lo + hi) / 2 >= 0 else "#c0392b" for lo, hi in zip(left, right)], alpha=0.7)
    sheet.charts["trade-pnl"] = _item(fig, "trade-pnl-plot")

    # exposure: net units held per instrument
    fig = timeline("exposure: net position (units, + long / - short)", "units", 220)
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
    for symbol, color in zip(instruments, ["#1f5fbf", "#e08e0b", "#1f8f3a", "#8e44ad", "#c0392b", "#5b6478"] * 10):
        held = net_position(trades, full.index, symbol) if len(trades) else pd.Series(0.0, index=full.index)
        held = held.iloc[envelope(held.to_numpy())]
        fig.step(_ms(held.index), held.to_numpy().tolist(), mode="after", color=color, legend_label=symbol)
    fig.legend.location = "top_left"
    sheet.charts["exposure"] = _item(fig, "exposure-plot")

    sheet.monthly = monthly_table(full)
    return sheet
