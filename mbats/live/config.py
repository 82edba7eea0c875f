"""What a live/paper session needs: strategy, instruments, mode, limits, and the mode guard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mbats.config import Settings
from mbats.errors import ConfigError
from mbats.kernel.limits import RiskLimits

LIVE_CONFIRMATION = "yes-i-mean-real-money"
MODES = ("paper", "live")


@dataclass
class LiveConfig:
    strategy: str
    instruments: list[str]
    mode: str = "paper"
    params: dict = field(default_factory=dict)
    granularity: str = "M1"
    until: datetime | None = None  # stop once a bar at or after this time has been processed
    max_bars: int | None = None  # stop after this many live bars
    warmup: int = 200  # historical bars backfilled before trading
    units: int = 10_000  # fixed sizer stake, as in backtests (fixed:units=10000)
    session_key: str | None = None  # same key → a restart resumes the same run
    model_alias: str | None = None
    sim_step: bool = False  # simulator only: advance its replay clock one bar after each bar
    confirm_live: bool = False
    risk: RiskLimits = field(default_factory=RiskLimits)
    track: bool = False  # once it ends, an MLflow run with the session's lineage tags (mbats.tracking.log_session)


def check_mode(settings: Settings, mode: str, confirm_live: bool) -> None:
    """Paper never touches a live account; live needs an explicit confirmation."""
    if mode not in MODES:
        raise ConfigError(f"mode '{mode}' is not paper or live")
    env = settings.oanda_environment
    if mode == "paper" and env == "live":
        raise ConfigError("paper mode refuses MBATS_OANDA_ENVIRONMENT=live; use practice or sim")
    if mode == "live":
        if env != "live":
            raise ConfigError(f"live mode needs MBATS_OANDA_ENVIRONMENT=live (it is {env}); use --mode paper")
        if not confirm_live and settings.live_confirm != LIVE_CONFIRMATION:
            raise ConfigError(
                f"live mode trades real money: pass --confirm-live or set MBATS_LIVE_CONFIRM={LIVE_CONFIRMATION}"
            )
