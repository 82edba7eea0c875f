"""The kernel is shared, not a back door: it imports no engine, and backtests need nothing from live."""

from __future__ import annotations

import json
import subprocess
import sys

KERNEL = ["costs", "fx", "indicators", "limits", "signals", "sizing", "strategies", "timeframes", "trades", "version"]


def _loaded_after(modules: list[str]) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mbats.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)  # imports are slow on a loaded machine
    return set(json.loads(out.stdout))


def test_the_kernel_imports_no_engine():
    loaded = _loaded_after([f"mbats.kernel.{name}" for name in KERNEL])
    assert not {m for m in loaded if m.startswith(("mbats.backtest", "mbats.research", "mbats.live"))}, loaded


def test_backtests_with_limits_do_not_load_live_trading():
    loaded = _loaded_after(["mbats.backtest.runner", "mbats.backtest.limits"])
    assert not {m for m in loaded if m.startswith(("mbats.live", "mbats.venues"))}, loaded

