"""The deployments file: which strategies trade (paper or live), on what, when.

``strategies/deployments.yaml`` (or ``MBATS_DEPLOYMENTS_FILE``) holds a list of deployments::

    deployments:
      - name: sma_eurusd_paper          # DAG id becomes live_sma_eurusd_paper
        strategy: sma_crossover
        instruments: [EUR_USD]
        granularity: M5
        mode: paper                     # paper | live
        account: "${MBATS_OANDA_ACCOUNT_ID}"   # or a literal id; no secrets in this file
        params: {fast: 10, slow: 30}
        model_alias: null               # e.g. models:/eurusd-direction@champion
        schedule: "0 7 * * 1-5"         # cron, in `timezone`
        session: {start: "07:00", end: "16:00", timezone: Europe/London}
        enabled: true

The file is read every time the DAG processor parses ``dags/live.py``: reading it must stay cheap,
local and strict. Any mistake raises :class:`DeploymentsError` naming the file, the entry and the
field, so Airflow shows an import error instead of silently dropping DAGs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from mbats.config import PROJECT_ROOT, Settings
from mbats.errors import ConfigError

DEPLOYMENTS_ENV = "MBATS_DEPLOYMENTS_FILE"
DEFAULT_FILE = PROJECT_ROOT / "strategies" / "deployments.yaml"
MODES = ("paper", "live")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SYMBOL = re.compile(r"^[A-Z]{3}_[A-Z]{3}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_ENV_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)\}$")
_KEYS = {"name", "strategy", "instruments", "granularity", "mode", "account", "params", "model_alias", "schedule",
         "session", "enabled", "description"}


class DeploymentsError(ConfigError):
    """The deployments file is missing, unreadable or has an invalid entry."""


@dataclass(frozen=True)
class Session:
    start: time
    end: time
    timezone: str = "UTC"

    def window(self, day: datetime) -> tuple[datetime, datetime]:
        """The session on the local calendar day of ``day``: (start, end) as aware datetimes.

        An end at or before the start means the session runs past midnight into the next day.
        """
        tz = ZoneInfo(self.timezone)
        local_day = day.astimezone(tz).date()
        start = datetime.combine(local_day, self.start, tzinfo=tz)
        end = datetime.combine(local_day, self.end, tzinfo=tz)
        if end <= start:
            end += timedelta(days=1)
        return start, end


@dataclass(frozen=True)
class Deployment:
    name: str
    strategy: str
    instruments: tuple[str, ...]
    mode: str
    schedule: str
    session: Session
    granularity: str = "M5"
    account: str | None = None
    params: dict = field(default_factory=dict)
    model_alias: str | None = None
    enabled: bool = True
    description: str = ""

    @property
    def dag_id(self) -> str:
        return f"live_{self.name}"

    def resolved_account(self) -> str | None:
        """The account id, with a ``${VAR}`` reference read from the environment at run time."""
        if self.account is None:
            return None
        match = _ENV_REF.match(self.account)
        if not match:
            return self.account
        value = os.environ.get(match.group(1))
        if not value:
            raise DeploymentsError(f"deployment {self.name}: account refers to ${{{match.group(1)}}}, which is not set")
        return value

    def as_dict(self) -> dict:
        return {
            "name": self.name, "strategy": self.strategy, "instruments": list(self.instruments),
            "granularity": self.granularity, "mode": self.mode, "account": self.account, "params": dict(self.params),
            "model_alias": self.model_alias, "schedule": self.schedule,
            "session": {"start": self.session.start.strftime("%H:%M"), "end": self.session.end.strftime("%H:%M"),
                        "timezone": self.session.timezone},
            "enabled": self.enabled,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Deployment":
        return _parse_entry(data, "<dict>", 0)


def deployments_path() -> Path:
    return Settings().deployments_file or DEFAULT_FILE


def _fail(where: str, message: str) -> DeploymentsError:
    return DeploymentsError(f"{where}: {message}")


def _parse_session(raw, where: str) -> Session:
    if not isinstance(raw, dict):
        raise _fail(where, "session must be a mapping with start, end (HH:MM) and timezone")
    unknown = set(raw) - {"start", "end", "timezone"}
    if unknown:
        raise _fail(where, f"session has unknown keys {sorted(unknown)}")
    parts = {}
    for key in ("start", "end"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 07:00 as sexagesimal 420
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str) or not _HHMM.match(value):
            raise _fail(where, f"session.{key} must be a time like \"07:00\" (got {value!r})")
        hours, minutes = map(int, value.split(":"))
        parts[key] = time(hours, minutes)
    tz = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(where, f"session.timezone {tz!r} is not an IANA time zone (e.g. Europe/London)") from None
    if parts["start"] == parts["end"]:
        raise _fail(where, "session start and end are equal; a session must have a length")
    return Session(parts["start"], parts["end"], str(tz))


def _check_schedule(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, "schedule must be a cron expression such as \"0 7 * * 1-5\" or a preset like \"@daily\"")
    value = value.strip()
    if not value.startswith("@") and len(value.split()) != 5:
        raise _fail(where, f"schedule {value!r} is not a 5-field cron expression")
    return value


def _parse_entry(raw, source: str, index: int) -> Deployment:
    where = f"{source}: deployments[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, f"each deployment must be a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(where, f"name must be lower-case letters, digits and _ (got {name!r}); it becomes the DAG id live_<name>")
    where = f"{source}: deployment {name!r}"
    unknown = set(raw) - _KEYS
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    strategy = raw.get("strategy")
    if not isinstance(strategy, str) or not strategy:
        raise _fail(where, "strategy is required (a strategy name as in `mbats backtest --strategy`)")
    instruments = raw.get("instruments")
    if isinstance(instruments, str):
        instruments = [instruments]
    if not isinstance(instruments, list) or not instruments:
        raise _fail(where, "instruments must be a non-empty list such as [EUR_USD]")
    for symbol in instruments:
        if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
            raise _fail(where, f"instrument {symbol!r} is not an OANDA symbol like EUR_USD")
    mode = raw.get("mode")
    if mode not in MODES:
        raise _fail(where, f"mode must be one of {MODES} (got {mode!r})")
    account = raw.get("account")
    if account is not None and not isinstance(account, (str, int)):
        raise _fail(where, "account must be an account id or a ${ENV_VAR} reference")
    if mode == "live" and account is None:
        raise _fail(where, "a live deployment needs an account (an id or ${MBATS_OANDA_ACCOUNT_ID})")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise _fail(where, "params must be a mapping of strategy parameters")
    model_alias = raw.get("model_alias")
    if model_alias is not None and not isinstance(model_alias, str):
        raise _fail(where, "model_alias must be a string such as models:/name@champion")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(where, f"enabled must be true or false (got {enabled!r})")
    granularity = raw.get("granularity", "M5")
    from mbats.secmaster.granularity import GRANULARITIES

    if granularity not in GRANULARITIES:
        raise _fail(where, f"granularity {granularity!r} is not one of {sorted(GRANULARITIES)}")
    if "session" not in raw:
        raise _fail(where, "session is required: {start: \"07:00\", end: \"16:00\", timezone: Europe/London}")
    return Deployment(
        name=name, strategy=strategy, instruments=tuple(instruments), mode=mode,
        schedule=_check_schedule(raw.get("schedule"), where), session=_parse_session(raw["session"], where),
        granularity=granularity, account=None if account is None else str(account), params=dict(params),
        model_alias=model_alias, enabled=enabled, description=str(raw.get("description") or ""),
    )


def load_deployments(path: Path | str | None = None, *, include_disabled: bool = False) -> list[Deployment]:
    """Parse and validate the deployments file; raise :class:`DeploymentsError` on any problem.

    A missing file means no deployments (a fresh checkout); an empty ``deployments:`` list too.
    """
    path = Path(path) if path is not None else deployments_path()
    if not path.exists():
        if Settings().deployments_file:
            raise DeploymentsError(f"{path}: deployments file not found (set by {DEPLOYMENTS_ENV})")
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DeploymentsError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise DeploymentsError(f"{path}: cannot read ({exc.strerror})") from None
    if data is None:
        return []
    if not isinstance(data, dict) or "deployments" not in data:
        raise DeploymentsError(f"{path}: expected a mapping with a top-level 'deployments:' list")
    entries = data["deployments"] or []
    if not isinstance(entries, list):
        raise DeploymentsError(f"{path}: 'deployments' must be a list")
    deployments = [_parse_entry(raw, str(path), i) for i, raw in enumerate(entries)]
    seen: set[str] = set()
    for dep in deployments:
        if dep.name in seen:
            raise DeploymentsError(f"{path}: deployment name {dep.name!r} appears twice; names must be unique")
        seen.add(dep.name)
    return [d for d in deployments if include_disabled or d.enabled]
