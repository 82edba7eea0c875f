"""390-bar trailing mean updated every minute for a trading year (252 x 390 minutes):
iterative ring buffer vs rebuilding the window (a DataFrame of the last 390 bars) every minute."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from mbats.research.rolling import RollingMean

MINUTES = 252 * 390
WINDOW = 390


def main() -> None:
    rng = np.random.default_rng(1)
    prices = (1.27 + rng.normal(0, 1e-4, MINUTES).cumsum()).tolist()

    started = time.perf_counter()
    mean = RollingMean(WINDOW)
    iterative = [mean.update(p) for p in prices]
    t_iter = time.perf_counter() - started

    # The naive way: keep history, rebuild the trailing window as a DataFrame each minute.
    sample = 10_000  # measured on a sample of minutes, extrapolated to the year
    history: list[float] = []
    rebuilt = []
    started = time.perf_counter()
    for p in prices[:sample]:
        history.append(p)
        window = pd.DataFrame({"close": history[-WINDOW:]})
        rebuilt.append(window["close"].mean() if len(window) == WINDOW else np.nan)
    t_rebuild_sample = time.perf_counter() - started
    t_rebuild = t_rebuild_sample * MINUTES / sample

    np.testing.assert_allclose(iterative[WINDOW - 1:sample], rebuilt[WINDOW - 1:], rtol=1e-12)
    print(f"trailing mean, {WINDOW}-bar window, {MINUTES:,} minutes")
    print(f"  iterative (RollingMean): {t_iter:.3f} s  ({t_iter / MINUTES * 1e6:.2f} us/update)")
    print(f"  rebuild DataFrame window: {t_rebuild:.1f} s  ({t_rebuild / MINUTES * 1e6:.0f} us/update; "
          f"measured on {sample:,} minutes, extrapolated)")
    print(f"  speed-up: {t_rebuild / t_iter:.0f}x")


if __name__ == "__main__":
    main()
