"""The compiled sweep core scores a grid exactly as backtrader trades it, and as its numpy fallback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec, simulate
from mbats.kernel.trades import trades_fingerprint
from mbats.kernel.strategies import find_strategy
from mbats.config import PROJECT_ROOT
from mbats.research import core
from mbats.research.grid import expand_grid
from mbats.kernel.indicators import crossover, hold_targets, sma
from mbats.research.sweep import SweepRequest, run_sweep
from mbats.risk.metrics import compute_metrics

FINGERPRINT = ["instrument", "direction", "size", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl_net"]


def _specs(base: BacktestSpec, grid: dict) -> list[BacktestSpec]:
    return [replace(base, params=p) for p in expand_grid(grid)]


@pytest.mark.parametrize("slippage", [0.0, 0.4])
def test_compiled_core_agrees_with_backtrader_trade_for_trade(gbpusd_m1, slippage):
    bars = {"GBP_USD": gbpusd_m1}
    cls = find_strategy("sma_crossover")
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.9, commission=0.00002,
                        slippage_pips=slippage)
    grid = {"fast": [3, 7], "slow": [12, 30], "allow_short": [True, False]}
    specs = _specs(base, grid if not slippage else {"fast": [3], "slow": [12, 30], "allow_short": [True]})
    scores = core.score_grid(cls, specs, bars, threads=2, keep=set(range(len(specs))))
    assert scores.engine == "numba"
    for i, spec in enumerate(specs):
        sim = simulate(spec, bars)
        closed = sim.trades[~sim.trades["is_open"].astype(bool)]
        assert len(closed) > 50
        assert scores.trades[i] == len(closed), spec.params
        assert scores.fingerprints[i] == trades_fingerprint(sim.trades), spec.params
        pd.testing.assert_frame_equal(scores.trades_frame(i)[FINGERPRINT],
                                      sim.trades[FINGERPRINT].reset_index(drop=True), check_dtype=False,
                                      check_exact=True)
        assert scores.metrics[i]["final_value"] == pytest.approx(sim.equity["value"].iloc[-1], abs=1e-6)
        bt_metrics = compute_metrics(sim.equity["value"], sim.trades, sim.recording.bars, sim.recording.bars_in_market)
        assert scores.metrics[i]["exposure_pct"] == bt_metrics["exposure_pct"]
        for key in ("total_return_pct", "max_drawdown_pct", "max_drawdown_days", "sharpe", "sortino",
                    "var_95_1d_pct", "cvar_95_1d_pct", "sqn", "win_rate_pct", "profit_factor"):
            assert scores.metrics[i][key] == pytest.approx(bt_metrics[key], rel=1e-9, abs=1e-9), key


def test_numba_and_numpy_engines_give_identical_scores(gbpusd_m1, request):
    bars = {"GBP_USD": gbpusd_m1}
    cls = find_strategy("sma_crossover")
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=1.1, commission=0.00001, cash=50_000)
    specs = _specs(base, {"fast": [2, 5, 9], "slow": [9, 20, 45], "allow_short": [True, False]})
    compiled = core.score_grid(cls, specs, bars, threads=2, keep={0, 7})
    request.getfixturevalue("numpy_engine")
    fallback = core.score_grid(cls, specs, bars, keep={0, 7})
    assert (compiled.engine, fallback.engine) == ("numba", "numpy")
    assert any("numpy engine" in note for note in fallback.notes)
    assert compiled.trades == fallback.trades and max(compiled.trades) > 100
    equal_periods = specs.index(replace(base, params=dict(fast=9, slow=9, allow_short=True)))
    assert compiled.trades[equal_periods] == 0      # two equal averages never cross
    assert compiled.fingerprints == fallback.fingerprints
    assert compiled.metrics == fallback.metrics      # bit for bit, every metric
    for i in (0, 7):
        pd.testing.assert_frame_equal(compiled.trades_frame(i), fallback.trades_frame(i), check_exact=True)


def test_grid_too_big_for_the_sma_matrix_recomputes_the_same_smas(gbpusd_m1, monkeypatch):
    bars = {"GBP_USD": gbpusd_m1}
    cls = find_strategy("sma_crossover")
    specs = _specs(BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.8),
                   {"fast": [3, 6], "slow": [14, 33], "allow_short": [True, False]})
    shared = core.score_grid(cls, specs, bars, threads=2)
    monkeypatch.setattr(core, "SMA_MATRIX_BYTES", 0)
    recomputed = core.score_grid(cls, specs, bars, threads=2)
    assert any("recomputes its two (exact) SMAs" in note for note in recomputed.notes)
    assert recomputed.fingerprints == shared.fingerprints and recomputed.metrics == shared.metrics
    assert min(shared.trades) > 50


@pytest.mark.parametrize("period", [1, 7, 390, 1500, 20_000])
def test_compiled_sma_is_exactly_backtrader_s_fsum_mean(period):
    """Long windows and prices crossing a power of two (1.0) included: the kernel's sums stay exact."""
    import math

    from mbats.research import kernels

    rng = np.random.default_rng(period)
    close = np.round(1.0 + 0.003 * np.sin(np.arange(60_000) / 700) + rng.normal(0, 2e-5, 60_000), 5)
    assert close.min() < 1.0 < close.max()
    ints, scale = core._exact_ints(close, period)
    got = np.empty(len(close))
    kernels.exact_sma(ints, period, scale, got)
    np.testing.assert_array_equal(got, sma(pd.Series(close), period).to_numpy())
    for i in rng.integers(period - 1, len(close), 50):
        assert got[i] == math.fsum(close[i - period + 1:i + 1]) / period


def _near_tie_bars() -> pd.DataFrame:
    """5-digit prices moving by 0 or ±1 pip: the two averages are mathematically equal on many bars."""
    rng = np.random.default_rng(3)
    close = np.round(1.1 + np.cumsum(rng.choice([-1, 0, 0, 1], 4000)) * 1e-4, 5)
    opens = np.concatenate(([close[0]], close[:-1]))
    index = pd.date_range("2024-03-04", periods=len(close), freq="min", tz="UTC", name="ts")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, close) + 5e-5,
                         "low": np.minimum(opens, close) - 5e-5, "close": close, "volume": 1.0}, index=index)


class BacktraderSmaCross(bt.Strategy):
    """backtrader's own SMA and CrossOver indicators, the reference for crossings."""

    params = dict(fast=10, slow=30, allow_short=True)

    def __init__(self):
        self.cross = bt.ind.CrossOver(bt.ind.SMA(self.data.close, period=self.p.fast),
                                      bt.ind.SMA(self.data.close, period=self.p.slow))

    def next(self):
        position = self.position.size
        if self.cross[0] > 0 and position <= 0:
            if position < 0:
                self.close()
            self.buy()
        elif self.cross[0] < 0 and position >= 0:
            if position > 0:
                self.close()
            if self.p.allow_short:
                self.sell()


@pytest.mark.parametrize("fast,slow", [(2, 4), (3, 6), (4, 8)])
def test_near_tie_crossings_are_the_ones_backtrader_sees(fast, slow):
    frame = _near_tie_bars()
    close = frame["close"]
    ties = int((sma(close, fast) == sma(close, slow)).sum())
    naive = hold_targets(crossover(close.rolling(fast).mean(), close.rolling(slow).mean()))
    exact = hold_targets(crossover(sma(close, fast), sma(close, slow)))
    assert ties > 100 and (naive != exact).sum() > 0  # a plain float mean would trade other bars here

    bars = {"EUR_USD": frame}
    spec = BacktestSpec("sma_crossover", ["EUR_USD"], "M1", params=dict(fast=fast, slow=slow), spread_pips=0.5)
    reference = simulate(spec, bars, BacktraderSmaCross)
    scores = core.score_grid(find_strategy("sma_crossover"), [spec], bars, keep={0})
    assert scores.trades[0] == int((~reference.trades["is_open"].astype(bool)).sum()) > 100
    assert scores.fingerprints[0] == trades_fingerprint(reference.trades)


def test_signal_strategy_without_compiled_signals_still_scores_and_says_how(gbpusd_m1):
    class PandasOnlySma(find_strategy("sma_crossover")):
        """The same signals without the compiled declaration: signals() runs in pandas per configuration."""

        compiled_signals = None

    bars = {"GBP_USD": gbpusd_m1}
    base = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", spread_pips=0.8)
    specs = _specs(base, {"fast": [4, 6], "slow": [15, 25]})
    compiled = core.score_grid(find_strategy("sma_crossover"), specs, bars, threads=2)
    pandas_signals = core.score_grid(PandasOnlySma, specs, bars, threads=2)
    assert any("signals() runs once per configuration" in note for note in pandas_signals.notes)
    assert not any("signals()" in note for note in compiled.notes)
    assert pandas_signals.fingerprints == compiled.fingerprints and pandas_signals.metrics == compiled.metrics


def test_grid_the_core_cannot_model_falls_back_and_says_so(gbpusd_m1):
    eur = gbpusd_m1.assign(open=gbpusd_m1["open"] - 0.17, high=gbpusd_m1["high"] - 0.17,
                           low=gbpusd_m1["low"] - 0.17, close=gbpusd_m1["close"] - 0.17)
    bars = {"GBP_USD": gbpusd_m1, "EUR_USD": eur}
    base = BacktestSpec("sma_crossover", ["GBP_USD", "EUR_USD"], "M1", spread_pips=0.8)
    result = run_sweep(SweepRequest(base, {"fast": [5], "slow": [20, 40]}, top=1, workers=1, track=False,
                                    record=False), bars)
    assert result.engine == "processes"
    assert any("cannot model" in n and "one instrument" in n for n in result.notes)
    assert len(result.scores) == 2 and result.rerun[0].agrees, result.rerun[0].difference

    single = run_sweep(SweepRequest(replace(base, instruments=["GBP_USD"]), {"fast": [5], "slow": [20, 40]},
                                    top=2, workers=2, track=False, record=False), bars)
    assert single.engine == "numba" and single.to_dict()["engine"] == "numba"
    assert all(s.agrees for s in single.rerun), [s.difference for s in single.rerun]


def test_fingerprint_is_the_documented_numeric_layout():
    ts = pd.Timestamp("2024-01-02 10:00", tz="UTC")
    trades = pd.DataFrame({
        "trade_ref": ["1", "2"], "instrument": ["GBP_USD", "EUR_USD"], "direction": ["long", "short"],
        "size": [10_000, 5_000], "entry_ts": [ts, ts + pd.Timedelta(minutes=3)], "entry_price": [1.27, 1.1],
        "exit_ts": [ts + pd.Timedelta(minutes=5), pd.NaT], "exit_price": [1.2712, None], "pnl": [12.0, None],
        "pnl_net": [11.5, None], "commission": [0.5, None], "return_pct": [0.1, None], "mfe_pct": [0.1, None],
        "mae_pct": [0.0, None], "bars_held": [5.0, None], "is_open": [False, True]})
    us = ts.value // 1000
    columns = [np.array([1, 0], "<i4"), np.array([1, -1], "i1"), np.array([10_000.0, 5_000.0], "<f8"),
               np.array([us, us + 180_000_000], "<i8"), np.array([1.27, 1.1], "<f8"),
               np.array([us + 300_000_000, np.iinfo(np.int64).min], "<i8"), np.array([1.2712, np.nan], "<f8"),
               np.array([11.5, np.nan], "<f8")]
    expected = hashlib.sha256(b"mbats.trades.v1;n=2;instruments=EUR_USD,GBP_USD\n"
                              + b"".join(c.tobytes() for c in columns)).hexdigest()
    assert trades_fingerprint(trades) == expected
    moved = trades.assign(exit_price=[1.2712 + 2e-16, None])
    assert trades_fingerprint(moved) != expected           # the last bit of a price counts


@pytest.mark.slow
def test_first_run_says_it_is_compiling_and_the_next_loads_the_cache(tmp_path):
    script = ("from dataclasses import replace\n"
              "import pandas as pd\n"
              "from mbats.backtest.runner import BacktestSpec\n"
              "from mbats.kernel.strategies import find_strategy\n"
              "from mbats.research.core import score_grid\n"
              "from mbats.secmaster.samples import synthetic_minutes\n"
              "_, f = synthetic_minutes('GBP_USD', 1.27, '2024-01-01', '2024-01-03')\n"
              "f = f.set_index(pd.DatetimeIndex(f.pop('ts'), name='ts'))\n"
              "spec = BacktestSpec('sma_crossover', ['GBP_USD'], 'M1', params={'fast': 5, 'slow': 20})\n"
              "print(score_grid(find_strategy('sma_crossover'), [spec], {'GBP_USD': f}).notes)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               MBATS_STRATEGIES_DIR=str(PROJECT_ROOT / "strategies"))
    run = lambda: subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,  # noqa: E731
                                 timeout=600)
    first = run()
    assert first.returncode == 0, first.stderr
    assert "compiling the scoring core" in first.stdout
    assert list((tmp_path / "numba").rglob("*.nbi")), "numba wrote no cache index"
    second = run()
    assert second.returncode == 0, second.stderr
    assert "compiling" not in second.stdout + second.stderr


def test_sweep_command_says_which_engine_scored_the_grid(secmaster_conn):
    from mbats.secmaster.ingest import load_frames
    from mbats.secmaster.samples import eurusd_hourly

    instrument, frame = eurusd_hourly()
    load_frames(secmaster_conn, instrument, "H1", [("sample", frame)], assume_timezone="UTC")
    proc = subprocess.run([sys.executable, "-m", "mbats.cli.main", "sweep", "sma_crossover", "-i", "EUR_USD",
                           "-g", "H1", "--grid", "fast=5,10", "--grid", "slow=30", "--top", "1", "--spread", "1",
                           "--no-mlflow"], capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "2 configurations scored vectorised (numba)" in proc.stdout
    assert "vectorised and backtrader agree on all re-runs" in proc.stdout


def test_bars_the_core_cannot_score_are_one_clear_error(gbpusd_m1):
    from mbats.errors import MbatsError

    cls = find_strategy("sma_crossover")
    spec = BacktestSpec("sma_crossover", ["GBP_USD"], "M1", params=dict(fast=5, slow=20))
    broken = gbpusd_m1.copy()
    broken.iloc[100, broken.columns.get_loc("close")] = np.nan
    with pytest.raises(MbatsError, match="GBP_USD: open and close prices must be finite"):
        core.score_grid(cls, [spec], {"GBP_USD": broken})
    with pytest.raises(MbatsError, match="no bars for GBP_USD"):
        core.score_grid(cls, [spec], {"GBP_USD": gbpusd_m1.iloc[:0]})


def test_every_bundled_signal_strategy_scores_in_the_core_and_agrees_with_backtrader(gbpusd_m1):
    from mbats.kernel.signals import has_brackets, has_signals
    from mbats.kernel.strategies import available_strategies, declared_params, strategy_name

    # signal strategies and bracket strategies (rsi_atr) alike
    signal_strategies = [cls for cls in available_strategies() if has_signals(cls) or has_brackets(cls)]
    assert signal_strategies and any(has_brackets(cls) for cls in signal_strategies)
    for cls in signal_strategies:
        defaults = declared_params(cls)
        grid = {k: sorted({v, max(1, v // 2)}) for k, v in defaults.items() if type(v) is int}
        base = BacktestSpec(strategy_name(cls), ["GBP_USD"], "M1", spread_pips=0.7, commission=0.00001)
        result = run_sweep(SweepRequest(base, grid, top=2, workers=2, track=False, record=False),
                           {"GBP_USD": gbpusd_m1})
        assert result.engine == "numba", (cls, result.notes)
        assert len(result.rerun) == 2 and all(s.agrees for s in result.rerun), [s.difference for s in result.rerun]
        assert all(s.trades > 0 and s.trades_sha256 == s.bt_trades_sha256 for s in result.rerun)


def test_a_pair_quoted_outside_the_account_currency_is_not_scored_by_the_core():
    cls = find_strategy("sma_crossover")
    spec = BacktestSpec("sma_crossover", ["EUR_GBP"], "M1")
    spec.account_currency = "USD"           # BacktestSpec's account currency (the FX money rules)
    assert "converted from GBP into USD" in core.unsupported(cls, [spec])
    spec.account_currency = "GBP"
    assert core.unsupported(cls, [spec]) is None
