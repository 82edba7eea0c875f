"""Paper and live trading on OANDA v20 with backtrader (issue 6).

Adapter package, nautilus-style: :mod:`.config` (settings, limits, the live-mode guard),
:mod:`.data` (price stream → bars), :mod:`.execution` (the broker), :mod:`mbats.kernel.limits` (pre-trade
limits, kill switch, webhook, shared with backtests), :mod:`.reconcile` (start-up reconciliation), :mod:`.persistence`
(risk-DB writes as they happen), :mod:`.session` (one session, until its window ends) and
:mod:`.cli` (``mbats live``).
"""

from mbats.live.config import LIVE_CONFIRMATION, LiveConfig


def run_session(*args, **kwargs) -> int:
    """See :func:`mbats.live.session.run_session` (imported late: backtrader is heavy)."""
    from mbats.live.session import run_session as _run

    return _run(*args, **kwargs)


__all__ = ["LIVE_CONFIRMATION", "LiveConfig", "run_session"]
