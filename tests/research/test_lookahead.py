"""The look-ahead check: bundled strategies pass; strategies that peek at future bars are caught
at the first bar where they peeked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mbats.backtest.runner import BacktestSpec
from mbats.kernel.signals import SignalStrategy
from mbats.kernel.strategies import available_strategies, strategy_name
from mbats.research.lookahead import check_lookahead, cut_points


class PeekNextClose(SignalStrategy):
    """Long when the NEXT close is higher: the classic shift(-1) mistake."""

    params = dict()

    @classmethod
    def signals(cls, bars: pd.DataFrame) -> pd.Series:
        return np.sign(bars["close"].shift(-1) - bars["close"]).fillna(0)


class PeekOrders(bt.Strategy):
    """A plain backtrader strategy reading ``close[1]`` (the next bar) while it still exists."""

    def next(self):
        if len(self.data) < self.data.buflen():
            if self.data.close[1] > self.data.close[0]:
                self.buy(size=1000)
            else:
                self.sell(size=1000)


class HonestOrders(bt.Strategy):
    def next(self):
        if len(self.data) > 1:
            (self.buy if self.data.close[0] > self.data.close[-1] else self.sell)(size=1000)


class _StandInModel:
    """A registered model's stand-in: probability from the sign of the first feature (row by row)."""

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return 0.5 + 0.1 * np.sign(features.iloc[:, 0].to_numpy())


@pytest.fixture
def bars(eurusd_h1) -> dict[str, pd.DataFrame]:
    return {"EUR_USD": eurusd_h1.iloc[:2500]}


@pytest.mark.parametrize("cls", available_strategies(), ids=strategy_name)
def test_every_bundled_strategy_passes(cls, bars, monkeypatch):
    if strategy_name(cls) == "ml_signal":  # the strategy's own code, with a stand-in for the MLflow registry
        from mbats.ml import registry

        ref = registry.Resolved("m", "champion", "1", "models:/m/1", "models:/m@champion")
        monkeypatch.setattr(registry, "resolve", lambda *a, **k: ref)
        monkeypatch.setattr(registry, "load_model", lambda uri: _StandInModel())
    report = check_lookahead(BacktestSpec(strategy_name(cls), ["EUR_USD"], "H1"), bars)
    assert report.ok, report.to_dict()
    assert len(report.cuts) == 5 and report.method == ("signals" if issubclass(cls, SignalStrategy) else "orders")


def test_cut_points_spread_over_the_history_and_leave_out_at_least_the_last_bar(bars):
    index = bars["EUR_USD"].index
    cuts = cut_points(index, 5)
    assert cuts == sorted(cuts) and len(cuts) == 5
    assert cuts[0] == index[len(index) // 5] and cuts[-1] == index[-2]


def test_a_signal_strategy_using_shift_minus_one_is_caught_at_the_first_cut(bars):
    frame = bars["EUR_USD"]
    cuts = [frame.index[1000], frame.index[2000]]
    assert frame["close"].iloc[1001] != frame["close"].iloc[1000]  # so the peeked sign is not 0 there
    report = check_lookahead(BacktestSpec("peek_next_close", ["EUR_USD"], "H1"), bars, cuts, PeekNextClose)
    assert not report.ok and report.strategy == "peek_next_close" and report.method == "signals"
    # the truncated history cannot know bar 1001: the signal at bar 1000 (the cut) is the first to change
    assert [d.first_ts for d in report.differences] == cuts
    first = report.first
    assert first.cut == frame.index[1000] and first.instrument == "EUR_USD"
    assert first.full == np.sign(frame["close"].iloc[1001] - frame["close"].iloc[1000]) and first.truncated == 0


def test_a_backtrader_strategy_reading_the_next_bar_is_caught_by_its_orders(bars):
    frame = bars["EUR_USD"]
    cuts = [frame.index[700], frame.index[1500]]
    report = check_lookahead(BacktestSpec("peek_orders", ["EUR_USD"], "H1"), bars, cuts, PeekOrders)
    assert not report.ok and report.method == "orders"
    assert report.first.first_ts == frame.index[700]
    assert report.first.truncated == [] and len(report.first.full) == 1   # full history ordered, cut one could not
    honest = check_lookahead(BacktestSpec("honest_orders", ["EUR_USD"], "H1"), bars, cuts, HonestOrders)
    assert honest.ok


# --- the command, as a user runs it ------------------------------------------------------------

PEEKING_FILE = '''
import pandas as pd
from mbats.kernel.signals import SignalStrategy


class TomorrowsNews(SignalStrategy):
    params = dict(period=5)

    @classmethod
    def signals(cls, bars, period=5):
        future = bars["close"].shift(-period)
        return (future > bars["close"]).astype(int) - (future < bars["close"]).astype(int)
'''


def _mbats(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbats.cli.main", *args], capture_output=True, text=True,
                          env=os.environ.copy() | env, timeout=900)


def test_command_passes_a_bundled_strategy_and_fails_a_peeking_one(tmp_path):
    n = 1_500
    ts = pd.date_range("2024-03-04", periods=n, freq="1h", tz="UTC")
    close = 0.66 + np.cumsum(np.random.default_rng(5).normal(0, 5e-4, n))
    pd.DataFrame({"time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": close, "high": close + 2e-4,
                  "low": close - 2e-4, "close": close, "volume": 1}).to_csv(tmp_path / "bars.csv", index=False)
    loaded = _mbats("data", "import", str(tmp_path / "bars.csv"), "-i", "AUD_USD", "-g", "H1")
    assert loaded.returncode == 0, loaded.stderr

    good = _mbats("check", "lookahead", "sma_crossover", "-i", "AUD_USD", "-g", "H1", "--start", "2024-03-05",
                  "--json")
    assert good.returncode == 0, good.stderr
    result = json.loads(good.stdout)
    assert result["lookahead"] is False and result["method"] == "signals" and len(result["cuts"]) == 5

    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "tomorrows_news.py").write_text(textwrap.dedent(PEEKING_FILE))
    bad = _mbats("check", "lookahead", "tomorrows_news", "-i", "AUD_USD", "-g", "H1", "--cuts", "3",
                 MBATS_STRATEGIES_DIR=str(folder))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    errors = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: look-ahead in tomorrows_news")
    assert "decisions that changed" in bad.stdout
    usage = _mbats("check", "lookahead", "sma_crossover", "-i", "AUD_USD", "--cuts", "0")
    assert usage.returncode == 2 and "--cuts" in usage.stderr
