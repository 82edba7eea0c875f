"""Paper and live trading sessions: a backtest's strategy class trading an OANDA account bar by bar.

:mod:`.config` (session settings and the live-mode guard), :mod:`.signals` (signal strategies at a
constant cost per bar), :mod:`.session` (one session, until its window ends) and :mod:`.recorder` (the per-bar snapshot
analyzer); the session's risk-DB rows are written by :mod:`mbats.risk.live`. The venue
itself (price stream, broker, reconciliation) is :mod:`mbats.venues.oanda`; pre-trade limits are
:mod:`mbats.kernel.limits`, shared with backtests; the command is :mod:`mbats.cli.live`.
"""

from mbats.live.config import LIVE_CONFIRMATION, LiveConfig


def run_session(*args, **kwargs) -> int:
    """See :func:`mbats.live.session.run_session` (imported late: backtrader is heavy)."""
    from mbats.live.session import run_session as _run

    return _run(*args, **kwargs)


__all__ = ["LIVE_CONFIRMATION", "LiveConfig", "run_session"]
