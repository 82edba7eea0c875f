"""Shared inputs for the research benchmarks: a year of synthetic 1-minute GBP/USD bars (in memory)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MBATS_STRATEGIES_DIR", str(ROOT / "strategies"))
os.environ.setdefault("MBATS_HOME", str(ROOT / ".mbats"))


def year_of_minutes(symbol: str = "GBP_USD", price: float = 1.27) -> pd.DataFrame:
    from mbats.secmaster.samples import synthetic_minutes

    _, frame = synthetic_minutes(symbol, price, "2024-01-01", "2025-01-01")
    return frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))
