"""Superset dashboards as code: views vs bundle, read-only role, import, browser rendering, re-import."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg2
import pytest

from superset_browser import open_dashboard
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
DASHBOARDS = ["mbats-backtest", "mbats-sweeps", "mbats-live", "mbats-data-coverage"]


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


def test_reimport_changes_nothing(superset):
    """A second `start.sh init` (upgrade, admin, import, sync) leaves the imported objects as the
    first one did. Compared with the state right after the first init: opening a dashboard in the
    browser makes the frontend store its label colours, which an import rightly resets."""
    first = superset["after_first_init"]
    superset["run_init"](superset["env"], superset["logs"] / "init-again.log")
    again = _snapshot(superset["metadata_db"])
    assert again == first
