"""`mbats demo` end to end on the session's embedded PostgreSQL: data, runs, MLflow, idempotence."""

import pytest


def bar_counts(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT i.symbol || '/' || b.granularity, count(*) FROM bars b "
                    "JOIN instruments i ON i.id = b.instrument_id GROUP BY 1")
        return dict(cur.fetchall())


@pytest.fixture(scope="module")
def demo_results():
    from mbats.demo import DEMO_RUNS, run_demo

    results = run_demo(track=True)
    assert len(results) == len(DEMO_RUNS)
    return results


def test_demo_records_every_run_with_metrics(demo_results, risk_conn, secmaster_conn):
    with secmaster_conn.cursor() as cur:
        cur.execute("SELECT is_synthetic, vendor, source FROM instruments WHERE symbol = 'GBP_USD'")
        synthetic, vendor, source = cur.fetchone()
        assert synthetic and vendor == "mbats-synthetic" and "seed" in source
        cur.execute("SELECT is_synthetic, source FROM instruments WHERE symbol = 'EUR_USD'")
        real, source = cur.fetchone()
        assert not real and "backtesting/test/EURUSD.csv" in source
    # the sample's 5,000 bars (2017-18), whatever recent bars other tests of the session downloaded
    with secmaster_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bars b JOIN instruments i ON i.id = b.instrument_id "
                    "WHERE i.symbol = 'EUR_USD' AND b.granularity = 'H1' AND b.ts < '2020-01-01'")
        assert cur.fetchone()[0] == 5000
    ids = [r.run_id for r in demo_results]
    with risk_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE id = ANY(%s) AND status = 'finished' AND mlflow_run_id IS NOT NULL",
                    (ids,))
        assert cur.fetchone()[0] == len(ids)
        cur.execute("SELECT count(DISTINCT metric) FROM run_metrics WHERE run_id = ANY(%s) AND value IS NOT NULL",
                    (ids,))
        assert cur.fetchone()[0] >= 15


def test_demo_runs_are_in_mlflow_with_plot_and_report(demo_results):
    import mlflow
    from mlflow import MlflowClient

    from mbats.tracking import use_experiment

    use_experiment()
    client = MlflowClient()
    result = demo_results[0]
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["mbats.run_id"] == str(result.run_id)
    assert run.data.params["param.fast"] == "10"
    assert run.data.metrics["trades"] == result.metrics["trades"]
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id, "report")}
    assert artifacts == {"report/report.html", "report/equity.png"}
    local = mlflow.artifacts.download_artifacts(run_id=result.mlflow_run_id, artifact_path="report/equity.png")
    assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_second_demo_changes_no_bar_counts(demo_results, secmaster_conn):
    from mbats.demo import run_demo

    before = bar_counts(secmaster_conn)
    again = run_demo(track=False)
    assert bar_counts(secmaster_conn) == before
    assert [r.trades_hash() for r in again] == [r.trades_hash() for r in demo_results]
