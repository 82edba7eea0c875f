"""The Superset asset bundle (services/superset/bundle), generated from one spec and the live views.

Datasets list the columns of the `dash` views as PostgreSQL reports them, so the bundle always
matches db/views/*.sql: `generate()` builds every file from the spec below and the views'
columns, `write()` saves them, `check()` lists the files that differ from a fresh build (the tests
run it against a freshly migrated database). UUIDs are derived from names, so regenerating is
stable and `superset import-dashboards` matches existing objects instead of duplicating them.

Database files carry a placeholder URI; services/superset/bundle_zip.py puts the read-only
user's real URI in at deploy time (the password never lands in the repository).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mbats.config import PROJECT_ROOT

BUNDLE_DIR = PROJECT_ROOT / "services" / "superset" / "bundle"
ROOT = "mbats_dashboards"  # the zip's one top-level folder
NS = uuid.UUID("6d0c6f1e-5b8a-4c59-9a63-2f1f0b6a7e10")
VERSION = "1.0.0"
NO_TIME_FILTER = {"clause": "WHERE", "comparator": "No filter", "expressionType": "SIMPLE",
                  "operator": "TEMPORAL_RANGE"}


def _uuid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NS, f"{kind}:{name}"))


# --- spec ------------------------------------------------------------------------------------------

DATABASES = {
    # file stem: (Superset name, database name in the placeholder URI)
    "risk": ("MBATS risk", "risk"),
    "secmaster": ("MBATS secmaster", "secmaster"),
}

# view -> database file stem
DATASETS = {
    "runs": "risk", "equity": "risk", "trades": "risk", "exposure": "risk", "sweep_results": "risk",
    "live_positions": "risk", "live_orders_today": "risk", "live_fills_today": "risk",
    "live_pnl_today": "risk", "risk_events": "risk", "risk_status": "risk",
    "eod_risk": "risk", "eod_risk_latest": "risk",
    "walk_forwards": "risk", "walk_forward_windows": "risk", "walk_forward_equity": "risk",
    "montecarlo": "risk", "montecarlo_percentiles": "risk",
    "bars_daily": "secmaster", "coverage": "secmaster", "bar_gaps": "secmaster",
}

# the time column a dataset's time-series charts use
MAIN_DTTM = {"equity": "ts", "exposure": "ts", "trades": "exit_ts", "runs": "started_at",
             "sweep_results": "started_at", "live_orders_today": "created_at", "live_fills_today": "ts",
             "live_positions": "ts", "risk_events": "ts", "bars_daily": "day", "bar_gaps": "gap_start",
             "eod_risk": "as_of", "eod_risk_latest": "as_of", "walk_forwards": "created_at",
             "walk_forward_windows": "test_start", "walk_forward_equity": "ts", "montecarlo": "created_at"}

# the dataset metric `latest` (native filters sort their values by it, newest first): the run id
# where a view has one, else the view's own creation order
LATEST = {"walk_forwards": "MAX(EXTRACT(EPOCH FROM created_at))", "montecarlo": "MAX(mc_id)"}


# the net position at the end of each time bucket (signed: shorts are negative); MAX would hide a
# long-to-short flip, which passes through 0 within the bucket
LAST_NET_UNITS = "(ARRAY_AGG(net_units ORDER BY ts DESC))[1]"
# gaps longer than this are separate data ranges (e.g. sample data vs a later download), not missing bars
MAX_GAP_DAYS = 30


def where(sql: str | None) -> list[dict]:
    """A chart's SQL filter (WHERE clause), as an adhoc filter."""
    return [{"expressionType": "SQL", "sqlExpression": sql, "clause": "WHERE"}] if sql else []


def latest(name: str, scope: str = "portfolio") -> str:
    """SQL metric: the value of one eod_risk result on the latest day that has it."""
    return f"(ARRAY_AGG(value ORDER BY as_of DESC) FILTER (WHERE scope = '{scope}' AND name = '{name}'))[1]"


def metric(sql: str, label: str) -> dict:
    return {"expressionType": "SQL", "sqlExpression": sql, "label": label, "hasCustomLabel": True,
            "optionName": "metric_" + _uuid("metric", sql + label)[:8]}


@dataclass
class Chart:
    name: str
    dataset: str
    viz_type: str
    params: dict
    width: int = 4
    height: int = 50
    columns_used: list[str] = field(default_factory=list)


def big_number(name: str, dataset: str, sql: str, label: str, fmt: str = ",.2f", width: int = 2) -> Chart:
    return Chart(name, dataset, "big_number_total",
                 {"metric": metric(sql, label), "adhoc_filters": [], "header_font_size": 0.4,
                  "subheader_font_size": 0.15, "y_axis_format": fmt, "time_format": "smart_date"},
                 width=width, height=25)


def timeseries(name: str, dataset: str, viz: str, x: str, metrics: list[dict], groupby: list[str],
               grain: str | None, fmt: str = "SMART_NUMBER", width: int = 6, sql_filter: str | None = None,
               **extra) -> Chart:
    params = {"x_axis": x, "metrics": metrics, "groupby": groupby, "time_grain_sqla": grain,
              "adhoc_filters": [dict(NO_TIME_FILTER, subject=x), *where(sql_filter)], "row_limit": 50000, "order_desc": True,
              "show_legend": True, "legendOrientation": "top", "legendType": "scroll", "rich_tooltip": True,
              "tooltipTimeFormat": "smart_date", "x_axis_time_format": "smart_date", "y_axis_format": fmt,
              "truncateXAxis": True, "y_axis_bounds": [None, None], "color_scheme": "supersetColors",
              "markerSize": 4, "only_total": True, "comparison_type": "values", "seriesType": "line",
              "x_axis_sort_asc": True, "sort_series_type": "sum"}
    params.update(extra)
    return Chart(name, dataset, viz, params, width=width, columns_used=[x, *groupby])


def category_bar(name: str, dataset: str, x: str, metrics: list[dict], fmt: str = "SMART_NUMBER",
                 width: int = 4, **extra) -> Chart:
    params = {"x_axis": x, "metrics": metrics, "groupby": [], "adhoc_filters": [], "row_limit": 1000,
              "order_desc": True, "orientation": "vertical", "show_legend": False, "y_axis_format": fmt,
              "color_scheme": "supersetColors", "only_total": True, "rich_tooltip": True,
              "x_axis_sort_asc": True, "truncateXAxis": True, "y_axis_bounds": [None, None]}
    params.update(extra)
    return Chart(name, dataset, "echarts_timeseries_bar", params, width=width, columns_used=[x])


def table(name: str, dataset: str, columns: list[str], order_by: str | None = None, desc: bool = True,
          width: int = 6, height: int = 50, row_limit: int = 1000, sql_filter: str | None = None) -> Chart:
    params = {"query_mode": "raw", "all_columns": columns, "groupby": [], "metrics": [], "percent_metrics": [],
              "adhoc_filters": where(sql_filter), "order_by_cols": [f'["{order_by}", {"false" if desc else "true"}]'] if order_by else [],
              "row_limit": row_limit, "server_page_length": 10, "table_timestamp_format": "smart_date",
              "show_cell_bars": True, "color_pn": True, "allow_render_html": False, "include_search": False}
    return Chart(name, dataset, "table", params, width=width, height=height, columns_used=list(columns))


def histogram(name: str, dataset: str, column: str, bins: int = 30, width: int = 4, y_title: str = "trades") -> Chart:
    params = {"column": column, "groupby": [], "adhoc_filters": [], "bins": bins, "normalize": False,
              "row_limit": 50000, "show_legend": False, "show_value": False, "color_scheme": "supersetColors",
              "x_axis_title": column, "y_axis_title": y_title}
    return Chart(name, dataset, "histogram_v2", params, width=width, columns_used=[column])


def heatmap(name: str, dataset: str, x: str, y: str, m: dict, grain: str | None = None, width: int = 6,
            fmt: str = "SMART_NUMBER", show_values: bool = True, x_format: str = "smart_date") -> Chart:
    params = {"x_axis": x, "groupby": y, "metric": m, "adhoc_filters": [], "row_limit": 10000,
              "time_grain_sqla": grain, "linear_color_scheme": "superset_seq_1", "normalize_across": "heatmap",
              "legend_type": "continuous", "show_legend": True, "show_percentage": False, "show_values": show_values,
              "sort_x_axis": "alpha_asc", "sort_y_axis": "alpha_asc", "value_bounds": [None, None],
              "xscale_interval": -1, "yscale_interval": -1, "left_margin": "auto", "bottom_margin": "auto",
              "x_axis_time_format": x_format, "y_axis_format": fmt}
    if grain:
        params["adhoc_filters"] = [dict(NO_TIME_FILTER, subject=x)]
    return Chart(name, dataset, "heatmap_v2", params, width=width, columns_used=[x, y])


@dataclass
class NativeFilter:
    name: str
    dataset: str
    column: str
    first_item: bool = True
    multi: bool = False
    where: str | None = None      # pre-filter of the values offered
    sort_metric: str | None = None  # saved metric of the dataset ordering the values (descending)


@dataclass
class Dashboard:
    slug: str
    title: str
    description: str
    rows: list[list[Chart]]
    filters: list[NativeFilter] = field(default_factory=list)


def bars_per_fx_day() -> Chart:
    """Bars per FX day (17:00 New York) and series (instrument + granularity) on a category axis:
    only days that have bars get a slot (a time axis over years of data with long breaks between
    ranges left the chart mostly empty), and a log y-axis keeps 1,440 M1 and 24 H1 bars readable."""
    params = {"x_axis": "day_label", "metrics": [metric("SUM(bars)", "bars")], "groupby": ["series"],
              "adhoc_filters": [], "row_limit": 50000, "order_desc": True, "orientation": "vertical",
              "show_legend": True, "legendOrientation": "top", "legendType": "scroll", "rich_tooltip": True,
              "y_axis_format": ",d", "logAxis": True, "minorSplitLine": False, "color_scheme": "supersetColors",
              "only_total": True, "x_axis_sort_asc": True, "truncateXAxis": True, "y_axis_bounds": [None, None],
              "x_axis_title": "FX day (ends 17:00 New York)", "x_axis_title_margin": 30,
              "y_axis_title": "bars (log scale)", "y_axis_title_margin": 40, "y_axis_title_position": "Left"}
    return Chart("Bars per FX day (x: FX day ending 17:00 New York, y: bars, log scale)", "bars_daily",
                 "echarts_timeseries_bar", params, width=12, columns_used=["day_label", "series"])


def risk_dashboard() -> Dashboard:
    """End-of-day risk from `eod_risk` (mbats.risk.eod): VaR/CVaR, exposure by currency, stress."""
    money = ",.0f"
    portfolio = "scope = 'portfolio'"
    return Dashboard(
        "mbats-risk", "MBATS · End-of-day risk",
        "Open paper/live positions each day (mbats.risk.eod, the eod_risk DAG): 1-day historical VaR and CVaR, "
        "net exposure by currency and historical FX shocks, in the account currency.",
        [
            [big_number("VaR 95% 1d (latest)", "eod_risk", latest("var_95_1d"), "VaR 95%", money, width=3),
             big_number("CVaR 95% 1d (latest)", "eod_risk", latest("cvar_95_1d"), "CVaR 95%", money, width=3),
             big_number("VaR 99% 1d (latest)", "eod_risk", latest("var_99_1d"), "VaR 99%", money, width=3),
             big_number("Gross exposure (latest)", "eod_risk", latest("gross_exposure"), "gross", money, width=3)],
            [timeseries("VaR and CVaR, 1 day (portfolio)", "eod_risk", "echarts_timeseries_line", "as_of",
                        [metric("MAX(value)", "loss")], ["name"], "P1D", money, width=6,
                        sql_filter=f"{portfolio} AND kind IN ('var', 'cvar')", truncateYAxis=True,
                        x_axis_time_format="%Y-%m-%d"),
             timeseries("Net exposure by currency", "eod_risk", "echarts_timeseries_bar", "as_of",
                        [metric("SUM(value)", "net exposure")], ["name"], "P1D", money, width=6,
                        sql_filter=f"{portfolio} AND kind = 'exposure'", x_axis_time_format="%Y-%m-%d")],
            [timeseries("Stress P&L by historical shock", "eod_risk", "echarts_timeseries_line", "as_of",
                        [metric("MIN(value)", "P&L")], ["name"], "P1D", money, width=12,
                        sql_filter=f"{portfolio} AND kind = 'stress'", truncateYAxis=True,
                        x_axis_time_format="%Y-%m-%d")],
            [table("Latest day: stress and exposure", "eod_risk_latest",
                   ["as_of", "kind", "name", "value", "unit", "description"], order_by="value", desc=False,
                   sql_filter=f"{portfolio} AND kind IN ('stress', 'exposure', 'summary')"),
             table("Latest day: VaR and CVaR (portfolio and recent runs)", "eod_risk_latest",
                   ["as_of", "scope", "name", "value", "unit", "scenarios", "reliable"], order_by="scope",
                   desc=False, sql_filter="kind IN ('var', 'cvar')")],
        ],
    )


def percentile_line(name: str, metrics: list[dict], fmt: str, y_title: str, width: int = 6) -> Chart:
    """A Monte Carlo quantile curve: x the percentile 1..99 (a number axis), y the metrics at it."""
    params = {"x_axis": "percentile", "metrics": metrics, "groupby": [], "adhoc_filters": [], "row_limit": 1000,
              "order_desc": True, "show_legend": True, "legendOrientation": "top", "legendType": "scroll",
              "rich_tooltip": True, "y_axis_format": fmt, "truncateYAxis": True, "y_axis_bounds": [None, None],
              "truncateXAxis": True, "color_scheme": "supersetColors", "markerEnabled": False, "only_total": True,
              "x_axis_sort_asc": True, "x_axis_title": "percentile of paths", "x_axis_title_margin": 30,
              "y_axis_title": y_title, "y_axis_title_margin": 50, "y_axis_title_position": "Left"}
    return Chart(name, "montecarlo_percentiles", "echarts_timeseries_line", params, width=width,
                 columns_used=["percentile"])


def walk_forward_dashboard() -> Dashboard:
    """Walk-forward optimisations (mbats.research.walkforward): in-sample vs out-of-sample per window."""
    pct, score = ".2f", ".3f"
    return Dashboard(
        "mbats-walk-forward", "MBATS · Walk-forward",
        "One walk-forward at a time (pick it in the filter bar; `mbats walkforward` or the walk_forward DAG): "
        "the in-sample winner's score against its out-of-sample score per window, and the stitched "
        "out-of-sample equity. Scores are the walk-forward's rank_by metric.",
        [
            [big_number("In-sample mean score", "walk_forwards", "MAX(is_mean)", "in-sample", score),
             big_number("Out-of-sample mean score", "walk_forwards", "MAX(oos_mean)", "out-of-sample", score),
             big_number("Degradation (in-sample − out-of-sample)", "walk_forwards", "MAX(degradation)",
                        "degradation", score),
             big_number("Stitched OOS return %", "walk_forwards", "MAX(oos_return_pct)", "return %", pct),
             big_number("Stitched OOS Sharpe", "walk_forwards", "MAX(oos_sharpe)", "Sharpe", pct),
             big_number("Stitched OOS max drawdown %", "walk_forwards", "MAX(oos_max_drawdown_pct)", "max DD %", pct)],
            [category_bar("In-sample vs out-of-sample score per window (x: test window start, instrument, window)",
                          "walk_forward_windows", "window_label",
                          [metric("MAX(is_score)", "in-sample"), metric("MAX(oos_score)", "out-of-sample")], score,
                          width=12, show_legend=True, legendOrientation="top")],
            [timeseries("Stitched out-of-sample equity", "walk_forward_equity", "echarts_timeseries_line", "ts",
                        [metric("MAX(value)", "account value")], ["instrument"], "PT1H", ",.0f", truncateYAxis=True),
             timeseries("Out-of-sample drawdown %", "walk_forward_equity", "echarts_timeseries_line", "ts",
                        [metric("MIN(drawdown_pct)", "drawdown %")], ["instrument"], "PT1H", pct)],
            [table("Windows: configuration chosen in-sample and its scores", "walk_forward_windows",
                   ["instrument", "window_no", "train_start", "test_start", "test_end", "params", "is_score",
                    "oos_score", "score_drop", "is_return_pct", "oos_return_pct", "oos_trades"],
                   order_by="test_start", desc=False, width=12)],
            [table("Walk-forward settings and summary", "walk_forwards",
                   ["wf_id", "strategy", "instruments", "granularity", "window_mode", "train", "test", "rank_by",
                    "windows", "is_mean", "oos_mean", "degradation", "efficiency", "oos_trades", "seconds", "status"],
                   width=12, height=30)],
        ],
        [NativeFilter("Walk-forward", "walk_forwards", "wf_label", where="status = 'finished'",
                      sort_metric="latest")],
    )


def montecarlo_dashboard() -> Dashboard:
    """Monte Carlo of runs (mbats.research.montecarlo): final equity and max drawdown over the paths."""
    money, pct = ",.0f", ".2f"
    return Dashboard(
        "mbats-montecarlo", "MBATS · Monte Carlo",
        "One simulation at a time (pick it in the filter bar; `mbats montecarlo RUN`): the distribution of "
        "final equity and of max drawdown over the reshuffled or resampled paths, beside the run's own.",
        [
            [big_number("Final equity p5", "montecarlo", "MAX(final_equity_p5)", "p5", money),
             big_number("Final equity p50", "montecarlo", "MAX(final_equity_p50)", "p50", money),
             big_number("Final equity p95", "montecarlo", "MAX(final_equity_p95)", "p95", money),
             big_number("Max drawdown % p50", "montecarlo", "MAX(max_drawdown_pct_p50)", "DD % p50", pct),
             big_number("Max drawdown % p95 (worst tail)", "montecarlo", "MAX(max_drawdown_pct_p95)", "DD % p95", pct),
             big_number("Paths ending below the start cash %", "montecarlo", "MAX(prob_loss_pct)", "P(loss) %", pct)],
            [percentile_line("Final equity by percentile (x: percentile of paths, y: account value)",
                             [metric("MAX(final_equity)", "simulated"), metric("MAX(run_final_equity)", "this run"),
                              metric("MAX(start_cash)", "start cash")], money, "final equity"),
             percentile_line("Max drawdown % by percentile (x: percentile of paths, y: drawdown %)",
                             [metric("MAX(max_drawdown_pct)", "simulated"),
                              metric("MAX(run_max_drawdown_pct)", "this run")], pct, "max drawdown %")],
            [histogram("Final equity distribution (99 percentiles)", "montecarlo_percentiles", "final_equity",
                       bins=20, width=6, y_title="percentiles (1 % of paths each)"),
             histogram("Max drawdown % distribution (99 percentiles)", "montecarlo_percentiles", "max_drawdown_pct",
                       bins=20, width=6, y_title="percentiles (1 % of paths each)")],
            [table("Simulation and the run's own figures", "montecarlo",
                   ["mc_id", "run_label", "method", "paths", "seed", "block_days", "samples", "start_cash",
                    "final_equity_p5", "final_equity_p50", "final_equity_p95", "max_drawdown_pct_p5",
                    "max_drawdown_pct_p50", "max_drawdown_pct_p95", "prob_loss_pct", "run_final_equity",
                    "run_max_drawdown_pct"], width=12, height=30)],
        ],
        [NativeFilter("Simulation", "montecarlo", "mc_label", sort_metric="latest")],
    )


def dashboards() -> list[Dashboard]:
    pct = ".2f"
    backtest = Dashboard(
        "mbats-backtest", "MBATS · Backtest performance",
        "One run at a time (pick it in the filter bar): equity, drawdown, ratios, trades, exposure.",
        [
            [big_number("Total return %", "runs", "MAX(total_return_pct)", "return %", pct),
             big_number("Sharpe", "runs", "MAX(sharpe)", "Sharpe", pct),
             big_number("Sortino", "runs", "MAX(sortino)", "Sortino", pct),
             big_number("Max drawdown %", "runs", "MAX(max_drawdown_pct)", "max DD %", pct),
             big_number("Closed trades", "runs", "MAX(trades)", "trades", ",d"),
             big_number("Win rate %", "runs", "MAX(win_rate_pct)", "win %", pct)],
            [timeseries("Equity", "equity", "echarts_timeseries_line", "ts",
                        [metric("MAX(value)", "account value")], ["run_label"], "PT1H", ",.0f",
                        truncateYAxis=True),  # y-axis fits the data: a ±0.3 % curve is not flat
             timeseries("Drawdown %", "equity", "echarts_area", "ts",
                        [metric("MIN(drawdown_pct)", "drawdown %")], ["run_label"], "PT1H", pct)],
            [table("Trade statistics", "runs", ["run_label", "trades", "win_rate_pct", "profit_factor", "expectancy",
                                                "sqn", "exposure_pct", "calmar", "final_value"], width=12, height=30)],
            [category_bar("Net P&L by instrument", "trades", "instrument", [metric("SUM(pnl_net)", "net P&L")],
                          ",.2f"),
             histogram("Trade P&L distribution", "trades", "pnl_net"),
             timeseries("Exposure (net units)", "exposure", "echarts_timeseries_line", "ts",
                        [metric(LAST_NET_UNITS, "net units (last in hour)")], ["instrument"], "PT1H", ",.0f",
                        width=4)],
            [table("Trades", "trades", ["instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts",
                                        "exit_price", "pnl_net", "return_pct", "bars_held", "outcome"],
                   order_by="entry_ts", width=12)],
        ],
        [NativeFilter("Run", "runs", "run_label", where="mode = 'backtest' AND status = 'finished'",
                      sort_metric="latest")],
    )
    sweeps = Dashboard(
        "mbats-sweeps", "MBATS · Parameter sweeps",
        "Runs grouped by sweep_id: Sharpe over the first two parameters, best configurations.",
        [
            [heatmap("Sharpe by parameters (x: 1st parameter, y: 2nd parameter)", "sweep_results", "param_1", "param_2",
                     metric("MAX(sharpe)", "Sharpe"), fmt=pct),
             category_bar("Mean Sharpe by first parameter", "sweep_results", "param_1",
                          [metric("AVG(sharpe)", "Sharpe")], pct, width=6)],
            [table("Best configurations", "sweep_results",
                   ["sharpe_rank", "run_label", "param_1_name", "param_1", "param_2_name", "param_2", "params",
                    "sharpe", "sortino", "total_return_pct", "max_drawdown_pct", "trades", "win_rate_pct"],
                   order_by="sharpe", width=12)],
        ],
        [NativeFilter("Sweep", "sweep_results", "sweep_id", sort_metric="latest")],
    )
    live = Dashboard(
        "mbats-live", "MBATS · Live trading",
        "Paper and live runs today (UTC): P&L, open positions, orders, fills, risk-limit events.",
        [
            [big_number("P&L today", "live_pnl_today", "SUM(pnl_today)", "P&L today", ",.2f", width=3),
             big_number("Positions open", "live_positions", "COUNT(*)", "positions", ",d", width=3),
             big_number("Order count today", "live_orders_today", "COUNT(*)", "orders", ",d", width=3),
             big_number("Risk events today", "risk_status", "COALESCE(SUM(events_today), 0)", "events", ",d",
                        width=3)],
            [table("P&L today by run", "live_pnl_today", ["run_label", "mode", "source", "account", "status", "value_start",
                                                          "value_now", "pnl_today", "realized_today", "unrealized",
                                                          "account_currency", "drawdown_pct", "updated_at"],
                   width=12, height=30)],
            # what `mbats live status` says: where the session runs, its kill switch, why it stopped
            [table("Session state (mbats live status)", "live_pnl_today",
                   ["run_label", "status", "runner", "kill_switch", "stop_reason", "pending_command", "updated_at"],
                   width=12, height=30)],
            [table("Open positions", "live_positions", ["run_label", "instrument", "size", "avg_price",
                                                        "market_price", "unrealized_pnl", "notional", "ts"]),
             table("Risk-limit status", "risk_status", ["rule", "events_today", "last_action", "last_event_at",
                                                        "last_run"])],
            [table("Orders today", "live_orders_today", ["created_at", "run_label", "instrument", "side",
                                                         "order_type", "size", "price", "status"],
                   order_by="created_at"),
             table("Fills today", "live_fills_today", ["ts", "run_label", "instrument", "size", "price",
                                                       "commission"], order_by="ts")],
            [table("Risk events", "risk_events", ["ts", "run_label", "rule", "instrument", "action", "detail"],
                   order_by="ts", width=12, row_limit=500)],
        ],
    )
    coverage = Dashboard(
        "mbats-data-coverage", "MBATS · Data coverage",
        "Bars in the security master per instrument and day, and the gaps between them.",
        [
            [big_number("Instruments", "coverage", "COUNT(DISTINCT instrument)", "instruments", ",d", width=3),
             big_number("Bars", "coverage", "SUM(bars)", "bars", ",d", width=3),
             big_number("Gaps", "bar_gaps", "COUNT(*)", "gaps", ",d", width=3),
             big_number("Missing bars", "bar_gaps", "COALESCE(SUM(missing_bars), 0)", "missing bars", ",d",
                        width=3)],
            [table("Coverage", "coverage", ["instrument", "granularity", "vendor", "is_synthetic", "bars",
                                            "first_ts", "last_ts", "days_with_bars"], width=12, height=30)],
            [bars_per_fx_day()],
            [heatmap("Coverage % (x: FX day, y: instrument)", "bars_daily", "day", "instrument",
                     metric("MAX(day_coverage_pct)", "coverage %"), grain="P1D", width=12, fmt=".0f",
                     show_values=False, x_format="%Y-%m-%d")],
            [table(f"Largest gaps (up to {MAX_GAP_DAYS} days; longer ones are separate data ranges)", "bar_gaps", ["instrument", "granularity", "gap_start", "gap_end", "gap_hours",
                                                "missing_bars"], order_by="gap_hours", width=12)],
        ],
        [NativeFilter("Granularity", "coverage", "granularity", first_item=False, multi=True)],
    )
    return [backtest, sweeps, live, coverage, risk_dashboard(), walk_forward_dashboard(), montecarlo_dashboard()]


# --- generation --------------------------------------------------------------------------------------

SUPERSET_TYPES = {"double precision": "DOUBLE PRECISION", "bigint": "BIGINT", "integer": "INTEGER",
                  "numeric": "NUMERIC", "text": "TEXT", "boolean": "BOOLEAN",
                  "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
                  "timestamp without time zone": "TIMESTAMP WITHOUT TIME ZONE"}


def _dump(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=120)


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _dataset_file(view: str, db: str, columns: list[tuple[str, str]]) -> dict:
    cols = []
    for name, pg_type in columns:
        base = pg_type.split("(")[0]
        cols.append({"column_name": name, "verbose_name": None, "is_dttm": base.startswith("timestamp"),
                     "is_active": True, "type": SUPERSET_TYPES.get(base, base.upper()), "advanced_data_type": None,
                     "groupby": True, "filterable": True, "expression": None, "description": None,
                     "python_date_format": None, "extra": None})
    return {"table_name": view, "main_dttm_col": MAIN_DTTM.get(view), "description": f"dash.{view} view",
            "default_endpoint": None, "offset": 0, "cache_timeout": None, "catalog": None, "schema": "dash",
            "sql": None, "params": None, "template_params": None, "filter_select_enabled": True,
            "fetch_values_predicate": None, "extra": None, "normalize_columns": False,
            "always_filter_main_dttm": False, "uuid": _uuid("dataset", f"{db}.{view}"),
            "metrics": [{"metric_name": name, "verbose_name": None, "metric_type": None, "expression": expr,
                         "description": None, "d3format": None, "currency": None, "extra": None, "warning_text": None}
                        for name, expr in (("count", "COUNT(*)"), ("latest", LATEST.get(view, "MAX(run_id)")))
                        if name == "count" or view in LATEST or any(c == "run_id" for c, _ in columns)],
            "columns": cols, "version": VERSION, "database_uuid": _uuid("database", db)}


def _dashboard_file(d: Dashboard, chart_ids: dict[str, int]) -> dict:
    position: dict = {"DASHBOARD_VERSION_KEY": "v2",
                      "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
                      "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
                      "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": d.title}}}
    for r, row in enumerate(d.rows):
        row_id = f"ROW-{d.slug}-{r}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for c, chart in enumerate(row):
            chart_id = f"CHART-{d.slug}-{r}-{c}"
            position[row_id]["children"].append(chart_id)
            chart_uuid = _uuid("chart", f"{d.slug}/{chart.name}")
            position[chart_id] = {"type": "CHART", "id": chart_id, "children": [],
                                  "parents": ["ROOT_ID", "GRID_ID", row_id],
                                  "meta": {"width": chart.width, "height": chart.height, "chartId": chart_ids[chart_uuid],
                                           "sliceName": chart.name, "uuid": chart_uuid}}
    filters = []
    for f in d.filters:
        filters.append({
            "id": f"NATIVE_FILTER-{_uuid('filter', d.slug + f.name)[:12]}", "name": f.name,
            "filterType": "filter_select", "type": "NATIVE_FILTER",
            "targets": [{"column": {"name": f.column}, "datasetUuid": _uuid("dataset", f"{DATASETS[f.dataset]}.{f.dataset}")}],
            "controlValues": {"enableEmptyFilter": f.first_item, "defaultToFirstItem": f.first_item,
                              "multiSelect": f.multi, "searchAllOptions": False, "inverseSelection": False,
                              "sortAscending": False},
            "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
            "adhoc_filters": [{"expressionType": "SQL", "sqlExpression": f.where, "clause": "WHERE"}] if f.where else [],
            "time_range": "No filter", "sortMetric": f.sort_metric,
            # requiredFirst: the dashboard applies the first value on load (no "Apply filters" click)
            "requiredFirst": f.first_item, "cascadeParentIds": [], "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
            "description": f"filters every chart whose dataset has a `{f.column}` column",
        })
    metadata = {"color_scheme": "supersetColors", "refresh_frequency": 0, "expanded_slices": {},
                "label_colors": {}, "shared_label_colors": [], "timed_refresh_immune_slices": [],
                "cross_filters_enabled": False, "default_filters": "{}", "chart_configuration": {},
                "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"], "excluded": []},
                                               "chartsInScope": []},
                "native_filter_configuration": filters}
    return {"dashboard_title": d.title, "description": d.description, "css": "", "slug": d.slug,
            "certified_by": None, "certification_details": None, "published": True,
            "uuid": _uuid("dashboard", d.slug), "position": position, "metadata": metadata, "version": VERSION}


def generate(view_columns: dict[str, dict[str, list[tuple[str, str]]]]) -> dict[str, str]:
    """{path inside the bundle: YAML text}; ``view_columns`` is {database stem: {view: [(col, type)]}}."""
    files: dict[str, str] = {"metadata.yaml": _dump({"version": VERSION, "type": "Dashboard",
                                                     "timestamp": "2026-01-01T00:00:00+00:00"})}
    for stem, (name, dbname) in DATABASES.items():
        files[f"databases/{stem}.yaml"] = _dump({
            "database_name": name, "sqlalchemy_uri": f"postgresql+psycopg2://mbats_superset@localhost:5432/{dbname}",
            "cache_timeout": None, "expose_in_sqllab": True, "allow_run_async": False, "allow_ctas": False,
            "allow_cvas": False, "allow_dml": False, "allow_file_upload": False,
            "extra": {"allows_virtual_table_explore": True, "schemas_allowed_for_file_upload": []},
            "uuid": _uuid("database", stem), "version": VERSION})
    for view, stem in DATASETS.items():
        columns = view_columns.get(stem, {}).get(view)
        if not columns:
            raise ValueError(f"view dash.{view} not found in the {stem} database; run `mbats db upgrade`")
        files[f"datasets/{stem}/{view}.yaml"] = _dump(_dataset_file(view, stem, columns))
    for d in dashboards():
        names = [chart.name for row in d.rows for chart in row]
        if len(set(names)) != len(names):
            raise ValueError(f"{d.slug}: chart names must be unique (they make the uuids): {sorted(names)}")
        chart_ids: dict[str, int] = {}
        for row in d.rows:
            for chart in row:
                chart_uuid = _uuid("chart", f"{d.slug}/{chart.name}")
                chart_ids[chart_uuid] = len(chart_ids) + 1
                stem = DATASETS[chart.dataset]
                params = {"viz_type": chart.viz_type, "datasource": f"{chart.dataset}__table", **chart.params}
                if chart.viz_type == "table":
                    # readable numbers: prices with 5 decimals, other floats with 2
                    types = dict(view_columns[stem][chart.dataset])
                    params["column_config"] = {
                        c: {"d3NumberFormat": ".5~f" if "price" in c else ",.2~f"}
                        for c in chart.params["all_columns"] if types.get(c) == "double precision"}
                files[f"charts/{d.slug}/{_file_stem(chart.name)}.yaml"] = _dump({
                    "slice_name": chart.name, "description": None, "certified_by": None,
                    "certification_details": None, "viz_type": chart.viz_type, "params": params,
                    "query_context": None, "cache_timeout": None, "uuid": chart_uuid, "version": VERSION,
                    "dataset_uuid": _uuid("dataset", f"{stem}.{chart.dataset}")})
        files[f"dashboards/{d.slug}.yaml"] = _dump(_dashboard_file(d, chart_ids))
    return files


def live_view_columns() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """The `dash` views' columns in the configured risk and secmaster databases."""
    from mbats.dashboards.views import view_columns, view_databases

    return {stem: view_columns(database) for stem, database in view_databases().items()}


def chart_column_errors(view_columns: dict[str, dict[str, list[tuple[str, str]]]]) -> list[str]:
    """Charts or filters naming a column their view does not have."""
    errors = []
    for d in dashboards():
        for row in d.rows:
            for chart in row:
                have = {c for c, _ in view_columns[DATASETS[chart.dataset]].get(chart.dataset, [])}
                errors += [f"{d.slug}/{chart.name}: dash.{chart.dataset} has no column {c}"
                           for c in chart.columns_used if c not in have]
        for f in d.filters:
            have = {c for c, _ in view_columns[DATASETS[f.dataset]].get(f.dataset, [])}
            if f.column not in have:
                errors.append(f"{d.slug}/filter {f.name}: dash.{f.dataset} has no column {f.column}")
    return errors


def write(files: dict[str, str], directory: Path = BUNDLE_DIR) -> list[Path]:
    """Replace the bundle folder's YAML files with ``files``; return the paths written."""
    if directory.exists():
        for old in directory.rglob("*.yaml"):
            old.unlink()
    written = []
    for rel, text in sorted(files.items()):
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def check(files: dict[str, str], directory: Path = BUNDLE_DIR) -> list[str]:
    """Paths (relative to the bundle) that are missing, stale or extra compared with ``files``."""
    on_disk = {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*.yaml")} if directory.exists() else {}
    problems = [f"missing {rel}" for rel in files if rel not in on_disk]
    problems += [f"stale {rel}" for rel in files if rel in on_disk and on_disk[rel] != files[rel]]
    problems += [f"extra {rel}" for rel in on_disk if rel not in files]
    return sorted(problems)
