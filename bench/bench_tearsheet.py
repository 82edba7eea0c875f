"""What the run tear sheet costs (issue 15 item 6), next to the backtest it reports.

On the bundled EUR/USD H1 sample (5,000 bars), in memory, no database: one backtrader run of
``sma_crossover`` (``simulate``), then the tear sheet's charts (``tearsheet.build``: price with every
trade marked, equity vs buy-and-hold, underwater, rolling Sharpe/vol, trade P&L, exposure) and the
whole report file (``write_run_report``, which also draws the static PNG). Also the cost of a light
sheet for a sweep re-run (equity + underwater of the ≤ 500-point curve a child logs), which decided
whether sweep children get one. Each figure is the median of ``REPEATS`` runs after a warm-up.

    python bench/bench_tearsheet.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import pandas as pd
from research_common import ROOT  # noqa: F401,I001  (sets MBATS_STRATEGIES_DIR)

REPEATS = 3


def median_seconds(fn) -> float:
    fn()
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    os.environ.setdefault("MBATS_HOME", tempfile.mkdtemp(prefix="mbats-bench-"))
    from bokeh.models import NumeralTickFormatter  # noqa: F401  (import cost outside the timings)

    from mbats.backtest.runner import BacktestSpec, simulate
    from mbats.kernel.strategies import find_strategy
    from mbats.risk import tearsheet
    from mbats.risk.metrics import compute_metrics
    from mbats.risk.report import write_run_report
    from mbats.secmaster.samples import eurusd_hourly
    from mbats.tracking import thin

    _, frame = eurusd_hourly()
    frame = frame.rename(columns={c: c.lower() for c in frame.columns})
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop(frame.columns[0])), name="ts").tz_localize("UTC")
    bars = {"EUR_USD": frame.set_index(index)[["open", "high", "low", "close", "volume"]]}
    spec = BacktestSpec(strategy="sma_crossover", instruments=["EUR_USD"], granularity="H1", spread_pips=1.0)
    cls = find_strategy("sma_crossover")
    sim = simulate(spec, bars, cls)
    metrics = compute_metrics(sim.equity["value"], sim.trades, sim.recording.bars, sim.recording.bars_in_market)
    light = thin(sim.equity[["value"]]).copy()
    light_sheet = tearsheet.TearSheet(resources="")

    def light_build() -> None:  # what a sweep child's light sheet would draw: equity + underwater
        from bokeh.plotting import figure

        for title in ("equity", "underwater"):
            fig = figure(title=title, x_axis_type="datetime", height=260)
            fig.line(tearsheet._ms(light.index), light["value"].tolist())
            light_sheet.charts[title] = tearsheet._item(fig, title)

    figures = {
        "backtest_s": median_seconds(lambda: simulate(spec, bars, cls)),
        "tearsheet_charts_s": median_seconds(
            lambda: tearsheet.build(sim.equity, sim.trades, bars, spec.instruments, "USD")),
        "report_file_s": median_seconds(
            lambda: write_run_report(1, "sma_crossover", {}, spec, metrics, sim.trades, sim.equity, bars=bars)),
        "light_sheet_s": median_seconds(light_build),
        "trades": int(len(sim.trades)),
        "bars": int(sim.bars),
    }
    path = write_run_report(1, "sma_crossover", {}, spec, metrics, sim.trades, sim.equity, bars=bars)
    figures["report_bytes"] = path.stat().st_size
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
