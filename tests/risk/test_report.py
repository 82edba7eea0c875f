"""The HTML run report states how its return ratios are annualised."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from mbats.config import reset_settings_cache
from mbats.risk.metrics import FX_DAYS_PER_YEAR, compute_metrics, drawdown
from mbats.risk.report import write_run_report


def test_report_states_the_fx_day_annualisation_factor(tmp_path, monkeypatch):
    monkeypatch.setenv("MBATS_HOME", str(tmp_path))
    reset_settings_cache()
    try:
        idx = pd.bdate_range("2024-01-01 12:00", periods=30, tz="UTC")
        equity = pd.DataFrame({"value": 10_000 * np.cumprod(np.full(30, 1.001))}, index=idx)
        equity["drawdown_pct"] = drawdown(equity["value"])
        trades = pd.DataFrame({"pnl_net": [], "is_open": []})
        metrics = compute_metrics(equity["value"], trades, bars=30, bars_in_market=0)
        spec = SimpleNamespace(instruments=["EUR_USD"], granularity="D", cash=10_000, commission=0.0, spread_pips=1.0,
                               sizer="fixed", account_currency="CHF", slippage_pips=0.5)
        path = write_run_report(1, "demo", {}, spec, metrics, trades, equity)
        html = path.read_text()
        assert path.parent.parent == tmp_path / "reports"
        assert f"annualised with {FX_DAYS_PER_YEAR} FX days a year" in html
        assert "17:00 America/New_York" in html
        assert "account CHF" in html and "slippage 0.5 pips" in html
        # money is labelled with the account currency: the cash, money metrics, P&L columns
        assert "cash 10,000 CHF" in html and "final_value (CHF)" in html and "expectancy (CHF)" in html
        assert "net P&amp;L (CHF)" in html and "net P&amp;L</th>" not in html
    finally:
        reset_settings_cache()
