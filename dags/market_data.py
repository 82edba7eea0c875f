"""Market-data downloads: ``market_data_minute`` (M1, hourly) and ``market_data_daily`` (H1 + D, daily).

Each run loads its fixed data interval [data_interval_start, data_interval_end) — re-running or
backfilling an interval is idempotent — with one mapped task per instrument, so one instrument
failing (a bad symbol, an outage) keeps the others' bars. ``data_quality`` always runs and reports
the interval's gaps against the FX trading week.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from mbats.alerts import airflow_failure_callback
from mbats.orchestration import marketdata as md
from mbats.orchestration.timetables import future_cron

PARAMS = {
    "instruments": Param(None, type=["null", "array"], items={"type": "string"},
                         description="Override MBATS_MARKETDATA_INSTRUMENTS for this run, e.g. [\"EUR_USD\"]"),
    "start": Param(None, type=["null", "string"], description="Override the data interval start (ISO time)"),
    "end": Param(None, type=["null", "string"], description="Override the data interval end (ISO time, exclusive)"),
}


def _interval() -> tuple[str, str]:
    """The run's data interval; params start/end override it (manual backfills)."""
    ctx = get_current_context()
    start, end = ctx["params"].get("start"), ctx["params"].get("end")
    if start and end:
        return start, end
    if ctx.get("data_interval_start") is None or ctx.get("data_interval_end") is None:
        raise ValueError("this run has no data interval (triggered without a logical date): "
                         "pass params start and end, e.g. {\"start\": \"2026-01-05T10:00Z\", \"end\": \"2026-01-05T11:00Z\"}")
    return ctx["data_interval_start"].isoformat(), ctx["data_interval_end"].isoformat()


def build(dag_id: str, granularities: list[str], cron: str, interval: timedelta, doc: str, gap_granularity: str):
    @dag(
        dag_id=dag_id,
        # a run at each cron time loads the interval that just ended; unpausing starts no run for a past one
        schedule=future_cron(cron, "UTC", interval=interval),
        start_date=datetime(2010, 1, 1),  # early: backfilling old intervals is legitimate
        catchup=False,
        max_active_runs=1,
        params=PARAMS,
        tags=["mbats", "market-data"],
        doc_md=doc,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=2),
                      "on_failure_callback": airflow_failure_callback},
    )
    def market_data():
        @task
        def instruments() -> list[str]:
            """The instruments of this run (param, else MBATS_MARKETDATA_INSTRUMENTS)."""
            override = get_current_context()["params"].get("instruments")
            return [s.upper() for s in override] if override else md.configured_instruments()

        @task(map_index_template="{{ mbats_label }}", max_active_tis_per_dagrun=4)
        def download(symbol: str) -> dict:
            """Candles of one instrument for the run's data interval (idempotent)."""
            get_current_context()["mbats_label"] = symbol
            start, end = _interval()
            results, errors, permanent = {}, [], True
            for granularity in granularities:
                try:
                    results[granularity] = md.download_interval(symbol, granularity, start, end)
                except Exception as exc:  # try every granularity, then fail the task
                    errors.append(f"{granularity}: {type(exc).__name__}: {exc}")
                    permanent = permanent and md.is_permanent(exc)
            if errors:
                message = f"{symbol}: " + "; ".join(errors)
                # a wrong symbol or a missing token does not heal by retrying
                raise AirflowFailException(message) if permanent else RuntimeError(message)
            return {"symbol": symbol, "results": results}

        @task(trigger_rule="all_done")
        def data_quality(symbols: list[str]) -> dict:
            """Gap report of the interval for every instrument, also those whose download failed."""
            start, end = _interval()
            report = md.gaps_for(symbols, gap_granularity, start, end)
            for symbol, r in report["reports"].items():
                print(f"{symbol} {gap_granularity}: {r.get('missing_bars', '?')} missing of "
                      f"{r.get('expected_bars', '?')} expected; {r.get('error') or ''}")
            return report

        symbols = instruments()
        downloads = download.expand(symbol=symbols)
        quality = data_quality(symbols)
        downloads >> quality

        @task
        def all_instruments_loaded(results: list[dict]) -> int:
            """Fails the run (after the quality report) when any instrument failed; the others' bars are kept."""
            return len(results)

        all_instruments_loaded(downloads)

    return market_data()


market_data_minute = build(
    "market_data_minute", ["M1"], "0 * * * *", timedelta(hours=1),
    "Hourly: the last hour's **M1** candles of every configured instrument (one mapped task each), "
    "then a gaps report.", "M1")
market_data_daily = build(
    "market_data_daily", ["H1", "D"], "0 0 * * *", timedelta(days=1),
    "Daily: the previous day's **H1** and **D** candles of every configured instrument "
    "(one mapped task each), then a gaps report.", "H1")
