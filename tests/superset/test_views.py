"""The `dash` views behind the dashboards, on small hand-made data (rolled back afterwards)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def test_bar_gaps_skip_the_weekend_and_count_missing_bars(secmaster_conn):
    cur = secmaster_conn.cursor()
    cur.execute("INSERT INTO instruments (symbol, base_currency, quote_currency, pip_size, vendor) "
                "VALUES ('TST_GAP', 'TST', 'GAP', 0.0001, 'test') RETURNING id")
    iid = cur.fetchone()[0]
    # Wed 2024-01-03 00:00 .. Fri 21:00 hourly, 3 hours missing on Thursday, then Sunday 22:00 .. Monday
    start = datetime(2024, 1, 3, tzinfo=timezone.utc)
    hours = [h for h in range(0, 70) if h not in (30, 31, 32)] + list(range(118, 130))
    for h in hours:
        cur.execute("INSERT INTO bars (instrument_id, granularity, ts, open, high, low, close) "
                    "VALUES (%s, 'H1', %s, 1, 1, 1, 1)", (iid, start + timedelta(hours=h)))
    cur.execute("SELECT gap_start, gap_end, missing_bars FROM dash.bar_gaps WHERE instrument = 'TST_GAP'")
    assert cur.fetchall() == [(start + timedelta(hours=29), start + timedelta(hours=33), 3)]
    # FX days (17:00 New York): Wed (from Tue 22:00 UTC), Thu, Fri, and Mon (its Sunday-evening start)
    cur.execute("SELECT bars, days_with_bars FROM dash.coverage WHERE instrument = 'TST_GAP'")
    assert cur.fetchone() == (len(hours), 4)
    cur.execute("SELECT day_label, bars, day_coverage_pct FROM dash.bars_daily WHERE instrument = 'TST_GAP' ORDER BY day")
    assert [(d, n, float(c)) for d, n, c in cur.fetchall()] == [
        ("2024-01-03", 22, 91.67), ("2024-01-04", 21, 87.5), ("2024-01-05", 24, 100.0), ("2024-01-08", 12, 50.0)]


def test_bars_per_day_counts_fx_days_per_series_on_a_category_axis(secmaster_conn):
    """The old chart summed every granularity per UTC calendar day on a time axis spanning years of
    data with long breaks: mostly empty. Now: one slot per FX day with bars, one series per
    instrument and granularity, a Sunday-evening open counted in Monday, a log y-axis."""
    from mbats.dashboards.bundle import dashboards

    cur = secmaster_conn.cursor()
    cur.execute("INSERT INTO instruments (symbol, base_currency, quote_currency, pip_size, vendor) "
                "VALUES ('TST_FXD', 'TST', 'FXD', 0.0001, 'test') RETURNING id")
    iid = cur.fetchone()[0]
    sunday_open = datetime(2024, 1, 7, 22, tzinfo=timezone.utc)  # 17:00 New York: Monday's FX day starts
    for gran, step, n in (("M1", timedelta(minutes=1), 1440), ("H1", timedelta(hours=1), 24)):
        for k in range(n):
            cur.execute("INSERT INTO bars (instrument_id, granularity, ts, open, high, low, close) "
                        "VALUES (%s, %s, %s, 1, 1, 1, 1)", (iid, gran, sunday_open + k * step))
    # and one H1 bar two years later: a separate data range, not hundreds of empty days
    cur.execute("INSERT INTO bars (instrument_id, granularity, ts, open, high, low, close) "
                "VALUES (%s, 'H1', '2026-03-04 12:00+00', 1, 1, 1, 1)", (iid,))
    cur.execute("SELECT series, day_label, bars, expected_bars FROM dash.bars_daily WHERE instrument = 'TST_FXD' "
                "ORDER BY day, series")
    assert cur.fetchall() == [("TST_FXD H1", "2024-01-08", 24, 24), ("TST_FXD M1", "2024-01-08", 1440, 1440),
                              ("TST_FXD H1", "2026-03-04", 1, 24)]
    chart = next(c for d in dashboards() if d.slug == "mbats-data-coverage" for row in d.rows for c in row
                 if c.name.startswith("Bars per FX day"))
    assert chart.params["x_axis"] == "day_label" and chart.params["groupby"] == ["series"]
    assert chart.params["logAxis"] is True and chart.params["metrics"][0]["sqlExpression"] == "SUM(bars)"


def test_runs_view_pivots_metrics_and_labels_runs(risk_conn):
    cur = risk_conn.cursor()
    cur.execute("INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version, sweep_id, "
                "params, status) VALUES ('sweep', 'backtest', 'sma', ARRAY['EUR_USD'], 'H1', 1e5, 't', 's1', "
                "'{\"slow\": 30, \"fast\": 5}', 'finished') RETURNING id")
    run_id = cur.fetchone()[0]
    cur.execute("INSERT INTO run_metrics VALUES (%s, 'sharpe', 1.5), (%s, 'max_drawdown_pct', 4.0)", (run_id, run_id))
    cur.execute("SELECT run_label, sharpe, max_drawdown_pct, sortino FROM dash.runs WHERE run_id = %s", (run_id,))
    # the label carries the parameters (alphabetical) so sweep runs differ in the run picker
    assert cur.fetchone() == (f"#{run_id} sma EUR_USD H1 fast=5 slow=30 [s1]", 1.5, 4.0, None)
    cur.execute("SELECT param_1_name, param_1, param_2_name, param_2, sharpe_rank FROM dash.sweep_results "
                "WHERE run_id = %s", (run_id,))
    assert cur.fetchone() == ("fast", "5", "slow", "30", 1)


def test_gaps_longer_than_the_limit_are_separate_ranges(secmaster_conn):
    from mbats.dashboards.bundle import MAX_GAP_DAYS, dashboards

    cur = secmaster_conn.cursor()
    cur.execute("INSERT INTO instruments (symbol, base_currency, quote_currency, pip_size, vendor) "
                "VALUES ('TST_RNG', 'TST', 'RNG', 0.0001, 'test') RETURNING id")
    iid = cur.fetchone()[0]
    start = datetime(2020, 1, 6, tzinfo=timezone.utc)  # a Monday; then years later a Monday again
    later = datetime(2024, 1, 8, tzinfo=timezone.utc)
    for ts in [start + timedelta(hours=h) for h in (0, 1, 2, 5)] + [later + timedelta(hours=h) for h in range(3)]:
        cur.execute("INSERT INTO bars (instrument_id, granularity, ts, open, high, low, close) "
                    "VALUES (%s, 'H1', %s, 1, 1, 1, 1)", (iid, ts))
    cur.execute("SELECT gap_start, missing_bars FROM dash.bar_gaps WHERE instrument = 'TST_RNG'")
    assert cur.fetchall() == [(start + timedelta(hours=2), 2)]  # the 4-year jump is not a gap
    title = [c.name for d in dashboards() for row in d.rows for c in row if c.name.startswith("Largest gaps")]
    assert title and f"{MAX_GAP_DAYS} days" in title[0]


def test_exposure_shows_shorts_and_the_chart_plots_the_last_position(risk_conn):
    from mbats.dashboards.bundle import LAST_NET_UNITS, dashboards

    cur = risk_conn.cursor()
    cur.execute("INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version, params, "
                "status) VALUES ('backtest', 'backtest', 'flip', ARRAY['EUR_USD'], 'M1', 1e5, 't', '{}', 'finished') "
                "RETURNING id")
    run_id = cur.fetchone()[0]
    t0 = datetime(2024, 1, 3, 10, 5, tzinfo=timezone.utc)
    t1, t2 = t0 + timedelta(minutes=20), t0 + timedelta(minutes=80)
    # long 100 until t1, then at the same minute short 60 until t2 (the flip passes through 0)
    for ref, (direction, size, entry, exit_) in enumerate((("long", 100, t0, t1), ("short", 60, t1, t2))):
        cur.execute("INSERT INTO trades (run_id, trade_ref, instrument, direction, size, entry_ts, entry_price, "
                    "exit_ts, exit_price, pnl, pnl_net, commission, is_open) "
                    "VALUES (%s, %s, 'EUR_USD', %s, %s, %s, 1.1, %s, 1.1, 0, 0, 0, false)",
                    (run_id, str(ref), direction, size, entry, exit_))
    cur.execute("SELECT ts, net_units FROM dash.exposure WHERE run_id = %s ORDER BY ts", (run_id,))
    assert [(ts, float(n)) for ts, n in cur.fetchall()] == [(t0, 100.0), (t1, -60.0), (t2, 0.0)]
    # the chart's metric per hour: the last position of the hour, negative while short
    cur.execute(f"SELECT date_trunc('hour', ts) AS h, {LAST_NET_UNITS} FROM dash.exposure WHERE run_id = %s "
                "GROUP BY 1 ORDER BY 1", (run_id,))
    assert [float(n) for _, n in cur.fetchall()] == [-60.0, 0.0]
    chart = next(c for d in dashboards() for row in d.rows for c in row if c.name == "Exposure (net units)")
    assert chart.params["metrics"][0]["sqlExpression"] == LAST_NET_UNITS


def test_chart_options_fit_the_data():
    from mbats.dashboards.bundle import dashboards

    charts = {c.name: c for d in dashboards() for row in d.rows for c in row}
    equity = charts["Equity"].params
    assert equity["truncateYAxis"] is True and equity["y_axis_bounds"] == [None, None]
    coverage = next(c for n, c in charts.items() if n.startswith("Coverage %"))
    assert coverage.params["show_values"] is False and coverage.params["x_axis_time_format"] == "%Y-%m-%d"
    heatmaps = [n for n, c in charts.items() if c.viz_type == "heatmap_v2"]
    assert heatmaps and all("x: " in n and "y: " in n for n in heatmaps)  # axes named in the title


def test_money_views_carry_the_runs_account_currency(risk_conn):
    """Equity, trades and financing say which currency their amounts are in (the run's account currency)."""
    cur = risk_conn.cursor()
    cur.execute("INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version, broker, "
                "status) VALUES ('backtest', 'backtest', 'sma', ARRAY['EUR_GBP'], 'H1', 1e5, 't', "
                "'{\"account_currency\": \"EUR\"}', 'finished') RETURNING id")
    run_id = cur.fetchone()[0]
    cur.execute("INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version, status) "
                "VALUES ('backtest', 'backtest', 'sma', ARRAY['EUR_USD'], 'H1', 1e5, 't', 'finished') RETURNING id")
    old_run = cur.fetchone()[0]  # recorded before runs named their currency: USD, the default then
    ts = datetime(2024, 3, 6, 22, tzinfo=timezone.utc)
    cur.execute("INSERT INTO equity (run_id, ts, cash, value, drawdown_pct) VALUES (%s, %s, 1e5, 1e5, 0)", (run_id, ts))
    cur.execute("INSERT INTO financing (run_id, ts, instrument, units, price, annual_rate, days, amount_quote, fx_rate, "
                "amount) VALUES (%s, %s, 'EUR_GBP', 10000, 0.86, -0.03, 3, -2.12, 1.16, -2.46)", (run_id, ts))
    cur.execute("SELECT run_id, account_currency FROM dash.runs WHERE run_id IN (%s, %s) ORDER BY run_id",
                (run_id, old_run))
    assert cur.fetchall() == [(run_id, "EUR"), (old_run, "USD")]
    cur.execute("SELECT account_currency FROM dash.equity WHERE run_id = %s", (run_id,))
    assert cur.fetchone() == ("EUR",)
    cur.execute("SELECT days, amount_quote, amount, account_currency FROM dash.financing WHERE run_id = %s", (run_id,))
    assert cur.fetchone() == (3, -2.12, -2.46, "EUR")
