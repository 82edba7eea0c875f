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
    cur.execute("SELECT bars, days_with_bars FROM dash.coverage WHERE instrument = 'TST_GAP'")
    assert cur.fetchone() == (len(hours), 5)
    cur.execute("SELECT day_coverage_pct FROM dash.bars_daily WHERE instrument = 'TST_GAP' ORDER BY day LIMIT 1")
    assert float(cur.fetchone()[0]) == 100.0


def test_runs_view_pivots_metrics_and_labels_runs(risk_conn):
    cur = risk_conn.cursor()
    cur.execute("INSERT INTO runs (run_type, mode, strategy, instruments, granularity, cash, code_version, sweep_id, "
                "params, status) VALUES ('sweep', 'backtest', 'sma', ARRAY['EUR_USD'], 'H1', 1e5, 't', 's1', "
                "'{\"slow\": 30, \"fast\": 5}', 'finished') RETURNING id")
    run_id = cur.fetchone()[0]
    cur.execute("INSERT INTO run_metrics VALUES (%s, 'sharpe', 1.5), (%s, 'max_drawdown_pct', 4.0)", (run_id, run_id))
    cur.execute("SELECT run_label, sharpe, max_drawdown_pct, sortino FROM dash.runs WHERE run_id = %s", (run_id,))
    assert cur.fetchone() == (f"#{run_id} sma EUR_USD H1 [s1]", 1.5, 4.0, None)
    cur.execute("SELECT param_1_name, param_1, param_2_name, param_2, sharpe_rank FROM dash.sweep_results "
                "WHERE run_id = %s", (run_id,))
    assert cur.fetchone() == ("fast", "5", "slow", "30", 1)
