"""One live/paper trading session of a deployment, bounded by its session window.

The DAG ``live_<deployment>`` calls :func:`run_session` once per scheduled run. The session ends
at the end of its window (no never-ending tasks); a retry calls it again and the live runner's
reconciliation with the broker makes that safe (open orders and positions are adopted, not
duplicated).

The live runner itself is :func:`mbats.live.run_session` (issue 6); if it is missing this raises
:class:`LiveRunnerUnavailable` with a message that says so, rather than pretending to trade.
Against the OANDA simulator (``MBATS_OANDA_ENVIRONMENT=sim``) the window is in replay time, so a
past window is traded rather than skipped.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timezone

from mbats.errors import MbatsError
from mbats.orchestration.deployments import Deployment, load_deployments


class LiveRunnerUnavailable(MbatsError):
    """mbats.live has no session runner yet."""


def find_deployment(name: str) -> Deployment:
    for dep in load_deployments(include_disabled=True):
        if dep.name == name:
            return dep
    raise MbatsError(f"no deployment {name!r} in the deployments file")


def session_bounds(deployment: Deployment, logical: datetime | None = None) -> tuple[datetime, datetime]:
    """The session window of the run scheduled at ``logical`` (default: now), in UTC."""
    start, end = deployment.session.window(logical or datetime.now(timezone.utc))
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _live_runner():
    try:
        module = importlib.import_module("mbats.live")
    except ImportError:
        module = None
    runner = getattr(module, "run_session", None) if module is not None else None
    if runner is None:
        try:
            runner = getattr(importlib.import_module("mbats.live.runner"), "run_session", None)
        except ImportError:
            runner = None
    if runner is None:
        raise LiveRunnerUnavailable(
            "the live runner is not available yet: mbats.live provides no run_session(deployment, until=...); "
            "this deployment's DAG is scheduled but cannot trade until it exists"
        )
    return runner


def run_session(deployment: Deployment | str, logical: datetime | None = None,
                now: datetime | None = None) -> dict:
    """Trade one session: start (or resume) now, stop at the end of the window; return a summary."""
    dep = find_deployment(deployment) if isinstance(deployment, str) else deployment
    start, until = session_bounds(dep, logical)
    now = now or datetime.now(timezone.utc)
    from mbats.config import get_settings

    replay = get_settings().oanda_environment == "sim"  # the simulator's clock is not the wall clock
    if now >= until and not replay:
        return {"deployment": dep.name, "skipped": True, "reason": f"session ended at {until.isoformat()}"}
    runner = _live_runner()
    # the account may be a ${VAR} reference in the deployments file: resolve it at run time
    result = runner(dep, until=until, account=dep.resolved_account())
    return {"deployment": dep.name, "mode": dep.mode, "session_start": start.isoformat(),
            "session_end": until.isoformat(), "result": result}
