"""Bad command-line input, table-driven: exit code 2 (usage) or 1, one `error:` line naming the
option, no traceback, nothing written to the risk or secmaster database.

Most cases run the real entry point (`mbats.cli.main.run`) in this process (fast); the click-level
errors and Ctrl-C also run as a subprocess, exactly as a user's shell sees them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port

BT = ["backtest", "sma_crossover", "-i", "EUR_USD", "--no-mlflow"]
SW = ["sweep", "sma_crossover", "-i", "EUR_USD", "--no-mlflow"]
LIVE = ["live", "sma_crossover", "-i", "EUR_USD"]
DL = ["data", "download", "-i", "EUR_USD"]

# (id, argv, exit code, text the one error line must contain)
CASES = [
    ("negative commission", [*BT, "--commission", "-1"], 2, "--commission: must be greater than or equal to 0"),
    ("absurd commission", [*BT, "--commission", "3"], 2, "--commission: must be less than or equal to 0.05"),
    ("negative spread", [*BT, "--spread", "-1"], 2, "--spread: must be greater than or equal to 0"),
    ("infinite spread", [*BT, "--spread", "inf"], 2, "--spread: must be a finite number"),
    ("nan spread", [*BT, "--spread", "nan"], 2, "--spread: must be a finite number"),
    ("zero max units", [*BT, "--max-units", "0"], 2, "--max-units: must be greater than 0"),
    ("negative gross exposure limit", [*BT, "--max-gross-exposure", "-5"], 2, "--max-gross-exposure: must be greater than 0"),
    ("zero cash", [*BT, "--cash", "0"], 2, "--cash: must be greater than 0"),
    ("negative cash", [*BT, "--cash", "-100"], 2, "--cash: must be greater than 0"),
    ("negative units", [*BT, "--sizer", "fixed:units=-5"], 2, "units must be a whole number from 1"),
    ("zero units", [*BT, "--sizer", "fixed:units=0"], 2, "units must be a whole number from 1"),
    ("fractional units", [*BT, "--sizer", "fixed:units=2.5"], 2, "units must be a whole number"),
    ("percent 500", [*BT, "--sizer", "percent:percent=500"], 2, "percent must be above 0 and at most 100"),
    ("percent 0", [*BT, "--sizer", "percent:percent=0"], 2, "percent must be above 0 and at most 100"),
    ("unknown sizer", [*BT, "--sizer", "kelly:f=2"], 2, "unknown sizer 'kelly'"),
    ("sizer junk", [*BT, "--sizer", "fixed:units"], 2, "expected key=value"),
    ("negative period", [*BT, "-p", "fast=-3"], 2, "fast=-3 is out of range: allowed 1 to 100000"),
    ("zero period", [*BT, "-p", "slow=0"], 2, "slow=0 is out of range"),
    ("absurd period", [*BT, "-p", "slow=1000000000"], 2, "slow=1000000000 is out of range"),
    ("float for int param", [*BT, "-p", "fast=1e12"], 2, "'1e12' is not an integer"),
    ("text for int param", [*BT, "-p", "fast=x"], 2, "'x' is not an integer"),
    ("bad boolean", [*BT, "-p", "allow_short=maybe"], 2, "not a boolean"),
    ("unknown param", [*BT, "-p", "nosuch=1"], 2, "has no parameter(s) nosuch"),
    ("param without =", [*BT, "-p", "fast"], 2, "expected name=value"),
    ("rsi threshold > 100", ["backtest", "rsi_atr", "-i", "EUR_USD", "-p", "oversold=150"], 2, "oversold=150.0 is out of range"),
    ("end before start", [*BT, "--from", "2024-02-01", "--to", "2024-01-01"], 2, "--to (2024-01-01 00:00) must be after --from"),
    ("end equals start", [*BT, "--from", "2024-02-01", "--to", "2024-02-01"], 2, "must be after --from"),
    ("not a date", [*BT, "--from", "yesterdayish"], 2, "--from 'yesterdayish' is not a date/time"),
    ("end before start (new names)", [*BT, "--start", "2024-02-01", "--end", "2024-01-01"], 2,
     "--end (2024-01-01 00:00) must be after --start"),
    ("old and new start", [*BT, "--start", "2024-01-01", "--from", "2024-01-01"], 2, "--from is the old name of --start"),
    ("sweep not a date", [*SW, "--grid", "fast=5,10", "--end", "soonish"], 2, "--end 'soonish' is not a date/time"),
    ("ml train not a date", ["ml", "train", "EUR_USD", "--start", "someday"], 2, "--start 'someday' is not a date/time"),
    ("sim end before start", ["sim", "serve", "--start", "2024-02-01", "--end", "2024-01-01"], 2, "must be after --start"),
    ("date from 1800", [*BT, "--from", "1800-01-01"], 2, "outside the plausible range"),
    ("date in 2300", [*BT, "--to", "2300-01-01"], 2, "outside the plausible range"),
    ("unknown granularity", [*BT, "-g", "Q7"], 2, "--granularity: unknown granularity 'Q7'"),
    ("bad instrument", ["backtest", "sma_crossover", "-i", "EURUSD"], 2, "'EURUSD' is not an instrument"),
    ("unknown strategy", ["backtest", "no_such", "-i", "EUR_USD"], 1, "unknown strategy 'no_such'"),
    ("markup in input", ["backtest", "[red]x[/red]", "-i", "EUR_USD"], 1, "unknown strategy '[red]x[/red]'"),
    ("unknown option", [*BT, "--bogus"], 2, "No such option: --bogus"),
    ("missing option", ["backtest", "sma_crossover"], 2, "Missing option '--instrument'"),
    ("unknown command", ["nosuch"], 2, "No such command 'nosuch'"),
    ("unknown subcommand", ["data", "nosuch"], 2, "No such command 'nosuch'"),
    ("option without value", [*BT, "--cash"], 2, "--cash"),
    ("text for a number", [*BT, "--cash", "lots"], 2, "Invalid value for '--cash'"),
    ("report abc", ["report", "abc"], 2, "Invalid value for 'run_id'"),
    ("report 0", ["report", "0"], 2, "RUN_ID: must be a positive run id"),
    ("report unknown", ["report", "999999"], 1, "no run 999999"),
    ("runs negative limit", ["runs", "--limit", "-1"], 2, "--limit: must be from 1"),
    ("emoji code in grid", [*SW, "--grid", "fast=5,:b:"], 2, "--grid 'fast=5,:b:'"),
    ("emoji code in param", [*BT, "-p", "fast=:b:"], 2, "parameter fast: ':b:' is not an integer"),
    ("grid value out of range", [*SW, "--grid", "fast=0:5"], 2, "--grid fast: parameter fast=0 is out of range"),
    ("grid unknown param", [*SW, "--grid", "nosuch=1,2"], 2, "has no parameter(s) nosuch"),
    ("huge grid", [*SW, "--grid", "fast=1:1000000000000000:1"], 2, "values; the limit is"),
    ("infinite grid", [*SW, "--grid", "fast=1:inf:1"], 2, "must be finite numbers"),
    ("grid and param", [*SW, "--grid", "fast=5,10", "-p", "fast=3"], 2, "also given as a fixed --param"),
    ("negative workers", [*SW, "--grid", "fast=5,10", "--workers", "-2"], 2, "--workers: must be greater than or equal to 0"),
    ("negative top", [*SW, "--grid", "fast=5,10", "--top", "-1"], 2, "--top: must be greater than or equal to 0"),
    ("negative tolerance", [*SW, "--grid", "fast=5,10", "--tolerance", "-1"], 2, "--tolerance"),
    ("unknown rank metric", [*SW, "--grid", "fast=5,10", "--rank-by", "luck"], 2, "--rank-by: unknown metric 'luck'"),
    ("sweep negative commission", [*SW, "--grid", "fast=5,10", "--commission", "-1"], 2, "--commission"),
    ("live negative warmup", [*LIVE, "--warmup", "-5"], 2, "--warmup: must be greater than or equal to 0"),
    ("live zero units", [*LIVE, "--units", "0"], 2, "--units: must be greater than or equal to 1"),
    ("live negative units", [*LIVE, "--units", "-10"], 2, "--units"),
    ("live zero bars", [*LIVE, "--bars", "0"], 2, "--bars"),
    ("live unknown mode", [*LIVE, "--mode", "yolo"], 2, "--mode: 'yolo' is not paper or live"),
    ("live negative loss limit", [*LIVE, "--max-daily-loss", "-5"], 2, "--max-daily-loss: must be greater than 0"),
    ("live infinite exposure", [*LIVE, "--max-gross-exposure", "inf"], 2, "--max-gross-exposure"),
    ("live webhook not a URL", [*LIVE, "--risk-webhook", "file:///etc/passwd"], 2, "--risk-webhook: must be an http"),
    ("live bad param", [*LIVE, "-p", "fast=-1"], 2, "fast=-1 is out of range"),
    ("live bad until", [*LIVE, "--until", "soon"], 2, "--until 'soon' is not a date/time"),
    ("download future start", [*DL, "--start", "2999-01-01"], 2, "outside the plausible range"),
    ("download start next year", [*DL, "--start", str(time.gmtime().tm_year + 1) + "-01-01"], 2, "is in the future"),
    ("download end before start", [*DL, "--start", "2024-02-01", "--end", "2024-01-01"], 2, "--end (2024-01-01 00:00) must be after --start"),
    ("download bad granularity", [*DL, "-g", "M7"], 2, "--granularity: unknown granularity 'M7'"),
    ("download bad price", [*DL, "--price", "MXZ"], 2, "--price: 'MXZ' must be letters from M"),
    ("download bad symbol", ["data", "download", "-i", "eur/usd"], 2, "'eur/usd' is not an instrument"),
    ("gaps min-missing 0", ["data", "gaps", "EUR_USD", "--min-missing", "0"], 2, "--min-missing must be at least 1"),
    ("gaps end before start", ["data", "gaps", "EUR_USD", "--start", "2024-02-01", "--end", "2024-01-01"], 2, "must be after --start"),
    ("sim negative spread", ["sim", "serve", "--spread", "-1"], 2, "--spread: must be a finite number from 0"),
    ("sim zero balance", ["sim", "serve", "--balance", "0"], 2, "--balance"),
    ("sim port out of range", ["sim", "serve", "--port", "70000"], 2, "--port: must be from 1 to 65535"),
    ("sim unknown source", ["sim", "serve", "--source", "moon"], 2, "--source: 'moon' is not synthetic"),
    ("ml one fold", ["ml", "train", "EUR_USD", "--folds", "1"], 2, "--folds: must be from 2 to 100"),
    ("ml zero horizon", ["ml", "train", "EUR_USD", "--horizon", "0"], 2, "--horizon: must be from 1"),
    ("ml end before start", ["ml", "train", "EUR_USD", "--start", "2024-02-01", "--end", "2024-01-01"], 2, "must be after --start"),
    ("ml serve port 0", ["ml", "serve", "--port", "0"], 2, "--port: must be from 1 to 65535"),
    ("ml promote nan", ["ml", "promote", "--min-improvement", "nan"], 2, "--min-improvement: must be a finite number"),
    # bar files ({dir} is a folder of files written by the `bar_files` fixture)
    ("import missing file", ["data", "import", "{dir}/nope.csv", "-i", "EUR_USD", "-g", "H1"], 2, "does not exist"),
    ("import bad timezone", ["data", "import", "{dir}/good.csv", "-i", "EUR_USD", "-g", "H1", "--timezone", "Mars/Base"],
     2, "--timezone: 'Mars/Base' is not a time zone"),
    ("import bad time unit", ["data", "import", "{dir}/epoch.csv", "-i", "EUR_USD", "-g", "H1", "--time-unit", "weeks"],
     2, "--time-unit: 'weeks' is not one of s, ms, us, ns"),
    ("import bad symbol", ["data", "import", "{dir}/good.csv", "-i", "EURUSD", "-g", "H1"], 2, "--instrument"),
    ("import absurd price", ["data", "import", "{dir}/spike.csv", "-i", "GBP_CAD", "-g", "H1"], 1,
     "row 9: open 1e+300 is outside the plausible price range"),
    ("import misplaced decimal", ["data", "import", "{dir}/decimal.csv", "-i", "GBP_CAD", "-g", "H1"], 1,
     "row 9: open 11000 is far from the neighbouring bars"),
    ("import wrong scale", ["data", "import", "{dir}/good.csv", "-i", "USD_JPY", "-g", "H1"], 1,
     "plausible USD_JPY price range 50 to 400"),
    ("import future bars", ["data", "import", "{dir}/future.csv", "-i", "GBP_CAD", "-g", "H1"], 1, "time in the future"),
    ("import epoch read as ns", ["data", "import", "{dir}/epoch.csv", "-i", "GBP_CAD", "-g", "H1", "--time-unit", "ns"],
     1, "time before 1971-01-01"),
    ("import half offsets", ["data", "import", "{dir}/half_offsets.csv", "-i", "GBP_CAD", "-g", "H1"], 1,
     "row 2: time '2024-03-31T01:00:00' has no UTC offset"),
    ("import naive times", ["data", "import", "{dir}/naive.csv", "-i", "GBP_CAD", "-g", "H1"], 1, "pass --timezone UTC"),
]


@pytest.fixture(scope="module")
def bar_files(tmp_path_factory):
    import numpy as np
    import pandas as pd

    folder = tmp_path_factory.mktemp("bad-bars")
    ts = pd.date_range("2024-03-04", periods=24, freq="1h", tz="UTC")
    close = 1.1 + np.arange(24) * 1e-4

    def frame(times, c=close):
        return pd.DataFrame({"time": times, "open": c, "high": c + 2e-4, "low": c - 2e-4, "close": c, "volume": 1})

    frame(ts.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(folder / "good.csv", index=False)
    frame(ts.strftime("%Y-%m-%dT%H:%M:%S")).to_csv(folder / "naive.csv", index=False)
    for name, value in (("spike", 1e300), ("decimal", 11000.0)):
        c = close.copy()
        c[8] = value
        frame(ts.strftime("%Y-%m-%dT%H:%M:%SZ"), c).to_csv(folder / f"{name}.csv", index=False)
    frame((ts + pd.Timedelta(days=365 * 30)).strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(folder / "future.csv", index=False)
    frame((ts - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)).to_csv(folder / "epoch.csv", index=False)
    half = frame(ts.strftime("%Y-%m-%dT%H:%M:%S+00:00")).head(3)
    half["time"] = ["2024-03-30T23:00:00+01:00", "2024-03-31T01:00:00", "2024-03-31T03:00:00+02:00"]
    half.to_csv(folder / "half_offsets.csv", index=False)
    return folder


def _row_counts() -> dict[str, int]:
    """Rows per table in the risk and secmaster databases (what a bad command must not touch)."""
    from mbats.db import connect

    counts: dict[str, int] = {}
    for database in ("risk", "secmaster"):
        conn = connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT schemaname, tablename FROM pg_tables "
                            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
                for schema, table in cur.fetchall():
                    cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
                    counts[f"{database}.{schema}.{table}"] = cur.fetchone()[0]
        finally:
            conn.close()
    return counts


def _run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    from mbats.cli.main import run

    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.parametrize(("argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(argv, code, message, capsys, bar_files):
    argv = [a.replace("{dir}", str(bar_files)) for a in argv]
    before = _row_counts()
    got, out, err = _run_in_process(argv, capsys)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert got == code, (argv, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    assert "Traceback" not in out + err and "🅱" not in out + err
    assert _row_counts() == before


def test_there_are_enough_kinds_of_bad_input():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


MBATS = [sys.executable, "-m", "mbats.cli.main"]


@pytest.mark.parametrize(("argv", "message"), [
    (["backtest", "sma_crossover", "--bogus"], "No such option: --bogus"),
    (["backtest", "sma_crossover"], "Missing option '--instrument'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["report", "abc"], "Invalid value for 'run_id'"),
    (["live", "sma_crossover", "-i", "EUR_USD", "--warmup", "-5"], "--warmup"),
])
def test_usage_errors_from_the_shell_exit_2_without_traceback(argv, message):
    proc = subprocess.run([*MBATS, *argv], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr


def test_ctrl_c_exits_130():
    """The simulator serves until Ctrl-C; SIGINT must end it with 130 and one line, not 0 or a traceback."""
    port = free_port()
    proc = subprocess.Popen([*MBATS, "sim", "serve", "--port", str(port), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout.readline().startswith("{"), proc.stderr.read() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip() == "error: interrupted"


SWEEP_CONF = {"strategy": "sma_crossover", "instruments": ["EUR_USD"], "grid": {"fast": [5, 10]}}


@pytest.mark.parametrize(("extra", "message"), [
    ({"cash": 0}, "conf.cash: must be greater than 0"),
    ({"cash": "lots"}, "conf.cash: 'lots' is not a number"),
    ({"commission": -1}, "conf.commission: must be greater than or equal to 0"),
    ({"spread_pips": float("inf")}, "conf.spread_pips: must be a finite number"),
    ({"sizer": "percent:percent=500"}, "percent must be above 0 and at most 100"),
    ({"grid": {"fast": [5, -1]}}, "fast=-1 is out of range"),
    ({"ranges": {"fast": {"start": 1, "stop": 1e15}}}, "the limit is"),
    ({"start": "2024-02-01", "end": "2024-01-01"}, "conf.end (2024-01-01 00:00) must be after conf.start"),
    ({"top": -3}, "conf.top: must be from 0 to 1000"),
    ({"instruments": ["EURUSD"]}, "'EURUSD' is not an instrument"),
    ({"granularity": "Q7"}, "conf.granularity: unknown granularity 'Q7'"),
])
def test_sweep_dag_conf_is_checked_like_the_cli(extra, message):
    """The Airflow sweep DAG's conf is a boundary too: the same ranges, refused before any task is mapped."""
    from mbats.orchestration.sweep import SweepConfError, normalize_conf

    with pytest.raises(SweepConfError) as info:
        normalize_conf(SWEEP_CONF | extra)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert normalize_conf(SWEEP_CONF)["cash"] == 100_000.0


@pytest.mark.parametrize(("variable", "value"), [
    ("MBATS_LIVE_MAX_DAILY_LOSS", "-5"), ("MBATS_LIVE_MAX_UNITS", "inf"), ("MBATS_OANDA_RETRY_ATTEMPTS", "0"),
    ("MBATS_OANDA_REQUESTS_PER_SECOND", "-1"), ("MBATS_EMBEDDED_PG_PORT", "80"), ("MBATS_OANDA_ENVIRONMENT", "prod"),
])
def test_a_setting_out_of_range_is_one_line_naming_the_variable(variable, value, monkeypatch, capsys):
    from mbats.config import reset_settings_cache

    monkeypatch.setenv(variable, value)
    reset_settings_cache()
    try:
        code, out, err = _run_in_process(["runs"], capsys)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: invalid setting {variable}:"), lines
