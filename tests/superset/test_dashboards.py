"""Superset dashboards as code: views vs bundle, read-only role, import, browser rendering, re-import."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg2
import pytest

from chart_checks import OLD_DEFECT_JS, axis_problems, plotted_values
from superset_browser import open_dashboard, rendered_charts
from superset_meta import _snapshot

ROOT = Path(__file__).resolve().parents[2]


def test_bundle_matches_live_views(pg_server):
    """The committed bundle is exactly what the spec and the migrated database's views produce."""
    from mbats.dashboards import bundle

    columns = bundle.live_view_columns()
    assert bundle.chart_column_errors(columns) == []
    files = bundle.generate(columns)
    assert bundle.check(files) == [], "bundle out of date: run `make superset-bundle`"
    # every dataset lists every column of its view, with the time columns marked
    import yaml

    runs = yaml.safe_load(files["datasets/risk/equity.yaml"])
    assert [c["column_name"] for c in runs["columns"]] == [c for c, _ in columns["risk"]["equity"]]
    assert {c["column_name"] for c in runs["columns"] if c["is_dttm"]} == {"ts"}


def test_bundle_zip_puts_real_uri(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "services/superset/bundle_zip.py"), str(tmp_path / "b.zip")],
                         env={"MBATS_SUPERSET_DATA_URL": "postgresql://ro:s3cret@db:5432", "PATH": "/usr/bin"},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        names = zf.namelist()
        assert {n.split("/")[0] for n in names} == {"mbats_dashboards"}
        assert "mbats_dashboards/metadata.yaml" in names
        risk = zf.read("mbats_dashboards/databases/risk.yaml").decode()
    assert "postgresql+psycopg2://ro:s3cret@db:5432/risk" in risk
    # and the committed files carry no password
    for path in (ROOT / "services/superset/bundle/databases").glob("*.yaml"):
        assert "s3cret" not in path.read_text() and ":" not in path.read_text().split("//")[1].split("@")[0]


def test_readonly_role_reads_views_only(dashboard_data, pg_server):
    RO_PASSWORD, SWEEP_ID = dashboard_data["ro_password"], dashboard_data["sweep_id"]
    from mbats.dashboards.views import readonly_role

    host, port = pg_server.split("@")[-1].split(":")
    conn = psycopg2.connect(host=host, port=int(port), dbname="risk", user=readonly_role(), password=RO_PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM dash.runs")
            assert cur.fetchone()[0] >= len(dashboard_data["demo"]) + len(dashboard_data["sweep"]) + 1
            cur.execute("SELECT count(*) FROM dash.sweep_results WHERE sweep_id = %s", (SWEEP_ID,))
            assert cur.fetchone()[0] == 4
            cur.execute("SELECT count(*) FROM dash.risk_events WHERE run_id = %s", (dashboard_data["paper"],))
            assert cur.fetchone()[0] == 2  # other suites (live trading) may have recorded events too
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT count(*) FROM public.runs")
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cur.execute("CREATE TEMP TABLE t (x int)")
        conn.rollback()
    finally:
        conn.close()


def test_live_views_show_today(dashboard_data, risk_conn):
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dash.live_orders_today WHERE run_id = %s", (dashboard_data["paper"],))
        assert cur.fetchone()[0] == 3
        cur.execute("SELECT count(*) FROM dash.live_positions WHERE run_id = %s", (dashboard_data["paper"],))
        assert cur.fetchone()[0] == 2
        cur.execute("SELECT value_start, value_now, pnl_today FROM dash.live_pnl_today WHERE run_id = %s",
                    (dashboard_data["paper"],))
        start, now, pnl = cur.fetchone()
        assert pnl == pytest.approx(now - start)
        # risk_status counts today's events of every run: compare it with the base table, and make
        # sure this test's two breaches are among them (the live-trading suite may add others)
        cur.execute("SELECT rule, count(*) FROM risk_events "
                    "WHERE ts >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' GROUP BY rule ORDER BY rule")
        expected = cur.fetchall()
        cur.execute("SELECT rule, events_today FROM dash.risk_status ORDER BY rule")
        assert cur.fetchall() == expected
        assert {"daily_loss_limit", "max_position_units"} <= {rule for rule, _ in expected}


def test_import_created_everything(superset):
    from mbats.dashboards import bundle

    snap = _snapshot(superset["metadata_db"])
    charts = sum(len(row) for d in bundle.dashboards() for row in d.rows)
    assert len(snap["dbs"]) == 2 and len(snap["tables"]) == len(bundle.DATASETS)
    assert len(snap["slices"]) == charts
    assert sorted(d[2] for d in snap["dashboards"]) == sorted(d.slug for d in bundle.dashboards())
    assert len(snap["dashboard_slices"]) == charts
    for _, _, slug, _, _, metadata in snap["dashboards"]:
        for f in json.loads(metadata).get("native_filter_configuration", []):
            assert len(f["chartsInScope"]) > 1, f"{slug}: filter {f['name']} scoped to no chart"


# expected: charts that must show rows (the live and sweep ones only with that data present)
DASHBOARDS = ["mbats-backtest", "mbats-sweeps", "mbats-live", "mbats-data-coverage", "mbats-risk",
              "mbats-walk-forward", "mbats-montecarlo"]


def _temporal_x(chart, columns) -> bool:
    from mbats.dashboards import bundle

    types = dict(columns[bundle.DATASETS[chart.dataset]][chart.dataset])
    return str(types.get(chart.params.get("x_axis"), "")).startswith("timestamp")


def _chart_problems(spec, driver, latest: dict, columns) -> tuple[list[str], dict]:
    """Axis/label/alert defects of every chart of the open dashboard, and the rendered charts by name."""
    charts = {c.name: c for row in spec.rows for c in row}
    rendered = {r.name: r for r in rendered_charts(driver)}
    assert set(rendered) == set(charts), f"{spec.slug}: charts in the page {sorted(rendered)}"
    problems = []
    for name, chart in charts.items():
        answer = latest.get(rendered[name].slice_id)
        payload = answer.payload if answer else {}
        problems += axis_problems(chart, rendered[name], payload, _temporal_x(chart, columns))
    return problems, rendered


@pytest.mark.parametrize("slug", DASHBOARDS)
def test_dashboard_renders_with_data(slug, superset, browser, dashboard_data, artifacts_dir):
    from mbats.dashboards import bundle

    spec = next(d for d in bundle.dashboards() if d.slug == slug)
    names = [c.name for row in spec.rows for c in row]
    shot = artifacts_dir / f"superset-{slug}.png"
    view = open_dashboard(browser, superset["base"], slug, len(names), shot)
    assert shot.exists() and shot.stat().st_size > 20_000
    assert view.chart_holders == len(names)
    assert view.error_elements == [], f"{slug}: error alerts on the page: {view.error_elements}"
    latest = {k: a for k, a in view.latest().items() if k is not None}
    assert len(latest) == len(names), f"{slug}: {len(latest)} of {len(names)} charts asked for data"
    for slice_id, answer in latest.items():
        assert answer.status == 200 and answer.error is None, f"{slug}: chart {slice_id}: {answer}"
        assert answer.rowcount and answer.rowcount > 0, f"{slug}: chart {slice_id} shows no data"
    # more than rows: each chart's axes fit what the data API answered, time series on time axes
    # spanning the data, no labels on top of each other, no "No results" or error in any chart
    columns = bundle.live_view_columns()
    problems, rendered = _chart_problems(spec, browser, latest, columns)
    assert problems == [], f"{slug}:\n" + "\n".join(problems)
    echarts = [r for r in rendered.values() if r.echarts]
    assert all(r.instances and r.instances[0] for r in echarts), f"{slug}: an ECharts instance was not readable"
    if slug == "mbats-backtest":
        # the run picker applied its first value on load: the trade list holds one run's trades only
        from mbats.db import connect

        conn = connect("risk")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM trades GROUP BY run_id")
            per_run = {min(n, 1000) for (n,) in cur.fetchall()}
            cur.execute("SELECT count(*) FROM trades")
            total = cur.fetchone()[0]
        conn.close()
        meta = connect(superset["metadata_db"])
        with meta.cursor() as cur:
            cur.execute("SELECT id FROM slices WHERE slice_name = 'Trades'")
            trades_chart = cur.fetchone()[0]
        meta.close()
        assert latest[trades_chart].rowcount in per_run and latest[trades_chart].rowcount < total
        # the checks catch the old defect: the equity curve's y-axis from 0 (a flat line)
        equity = rendered["Equity"]
        y = equity.instances[0]["y"][0]
        assert y["extent"][0] > 0, f"equity y-axis starts at {y['extent'][0]}"
        browser.execute_script(OLD_DEFECT_JS, equity.slice_id)
        import time

        time.sleep(1)
        again, _ = _chart_problems(spec, browser, latest, columns)
        assert any("'Equity'" in p and "drawn flat" in p for p in again), again
        browser.save_screenshot(str(artifacts_dir / "superset-mbats-backtest-old-equity-defect.png"))
    if slug == "mbats-live":
        # the stack's first-start session on the simulator is on the board, labelled as such
        pnl = next(r for r in rendered.values() if r.name == "P&L today by run")
        rows = [row for res in latest[pnl.slice_id].payload["result"] for row in res["data"]]
        sim = [row for row in rows if row["run_label"].startswith(f"#{dashboard_data['sim_run']} ")]
        assert len(sim) == 1 and sim[0]["run_label"].endswith("[oanda-sim]") and sim[0]["source"] == "oanda-sim", rows
        assert "[oanda-sim]" in pnl.text and "oanda-sim" in pnl.text.replace("[oanda-sim]", "")
    if slug == "mbats-risk":
        # every FX day the library computed is on the time axis of the VaR chart
        days = dashboard_data["eod"]["days"]
        var = rendered["VaR and CVaR, 1 day (portfolio)"].instances[0]
        assert var["x"][0]["type"] == "time"
        names = {s["name"] for s in var["series"]}
        assert {"var_95_1d", "cvar_95_1d", "var_99_1d", "cvar_99_1d"} <= names, names
        stamps = {int(p[0]) for s in var["series"] for p in s["data"]}
        from datetime import datetime, timezone

        assert {datetime.fromtimestamp(t / 1000, timezone.utc).date() for t in stamps} == set(days)
    if slug == "mbats-walk-forward":
        _check_walk_forward(rendered, latest, dashboard_data["research"]["wf"])
    if slug == "mbats-montecarlo":
        _check_montecarlo(rendered, latest, dashboard_data["research"]["mc"])


def _series(rendered, name: str) -> dict[str, list]:
    return {s["name"]: s["data"] for s in rendered[name].instances[0]["series"]}


def _check_walk_forward(rendered, latest, wf) -> None:
    """The filter picked the fixture's walk-forward (the newest): one bar pair per window, holding the
    library's in-sample and out-of-sample scores; the stitched equity ends where the library's does."""
    rows = wf.window_rows()
    bars = rendered["In-sample vs out-of-sample score per window (x: test window start, instrument, window)"]
    x = bars.instances[0]["x"][0]
    labels = [f"{r['test_start']:%Y-%m-%d} {r['instrument']} #{r['window_no']}" for r in rows]
    assert x["type"] == "category" and sorted(x["categories"]) == sorted(labels), x["categories"]
    series = _series(rendered, bars.name)
    assert set(series) == {"in-sample", "out-of-sample"}, series.keys()
    by_label = dict(zip(labels, rows))
    for kind, key in (("in-sample", "is_score"), ("out-of-sample", "oos_score")):
        points = series[kind]
        plotted = (dict((str(p[0]), p[1]) for p in points) if points and isinstance(points[0], (list, tuple))
                   else dict(zip(x["categories"], points)))
        assert plotted == pytest.approx({label: by_label[label][key] for label in labels}), kind
    equity = _series(rendered, "Stitched out-of-sample equity")
    assert set(equity) == {*wf.results, "ALL"}
    last = max(equity["ALL"], key=lambda p: p[0])
    assert last[1] == pytest.approx(wf.equity.resample("1h").max().dropna().iloc[-1])
    table = latest[rendered["Windows: configuration chosen in-sample and its scores"].slice_id]
    assert table.rowcount == len(rows)


def _check_montecarlo(rendered, latest, mc) -> None:
    """The filter picked the fixture's simulation (the newest): the quantile curve is its 1..99
    percentiles, on a number axis, with the run's own final equity beside it."""
    chart = rendered["Final equity by percentile (x: percentile of paths, y: account value)"]
    x = chart.instances[0]["x"][0]
    assert x["type"] == "value" and x["extent"][0] <= 1 and x["extent"][1] >= 99, x
    series = _series(rendered, chart.name)
    simulated = sorted((p[0], p[1]) for p in series["simulated"])
    expected = mc.percentiles()["final_equity"]
    assert [q for q, _ in simulated] == list(range(1, 100))
    assert [v for _, v in simulated] == pytest.approx([expected[q] for q in range(1, 100)])
    assert simulated[0][1] < simulated[-1][1]   # a real spread of outcomes
    assert {"this run", "start cash"} <= set(series)
    for name in ("Final equity distribution (99 percentiles)", "Max drawdown % distribution (99 percentiles)"):
        counts = plotted_values(rendered[name].instances[0]["series"], 1)   # bins of the 99 equally likely values
        assert sum(counts) == 99 and max(counts) < 99, counts


def test_reimport_changes_nothing(superset):
    """A second `start.sh init` (upgrade, admin, import, sync) leaves the imported objects as the
    first one did. Compared with the state right after the first init: opening a dashboard in the
    browser makes the frontend store its label colours, which an import rightly resets."""
    first = superset["after_first_init"]
    superset["run_init"](superset["env"], superset["logs"] / "init-again.log")
    again = _snapshot(superset["metadata_db"])
    assert again == first


def test_risk_views_hold_what_the_eod_library_stored(dashboard_data, risk_conn):
    """dash.eod_risk is eod_risk row for row; dash.eod_risk_latest the last day only; the read-only
    role reads both (the dashboard's data source)."""
    eod = dashboard_data["eod"]
    last = eod["summaries"][-1]
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM eod_risk")
        stored = cur.fetchone()[0]
        cur.execute("SELECT count(*), count(DISTINCT as_of) FROM dash.eod_risk")
        assert cur.fetchone() == (stored, len(eod["days"]))
        cur.execute("SELECT value, unit FROM dash.eod_risk WHERE as_of = %s AND scope = 'portfolio' AND name = 'var_95_1d'",
                    (eod["days"][-1],))
        assert cur.fetchone() == (pytest.approx(last["var_95_1d"]), "USD")
        cur.execute("SELECT DISTINCT as_of::date FROM dash.eod_risk_latest")
        assert cur.fetchall() == [(eod["days"][-1],)]
        cur.execute("SELECT name, value FROM dash.eod_risk_latest WHERE kind = 'exposure'")
        assert dict(cur.fetchall()) == pytest.approx(last["exposure"])
        assert set(last["exposure"]) == {"GBP", "AUD", "USD"} and last["exposure"]["AUD"] < 0  # the short leg
    from mbats.dashboards.views import readonly_role

    params = risk_conn.get_dsn_parameters()
    host, port = params["host"], params["port"]
    ro = psycopg2.connect(host=host, port=int(port), dbname="risk", user=readonly_role(),
                          password=dashboard_data["ro_password"])
    try:
        with ro.cursor() as cur:
            cur.execute("SELECT count(*) FROM dash.eod_risk")
            assert cur.fetchone()[0] == stored
    finally:
        ro.close()
