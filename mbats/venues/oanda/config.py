"""The OANDA venue's settings, read once from :class:`mbats.config.Settings`.

:class:`OandaConfig` is the only object that carries the access token; the client factory
(:func:`mbats.venues.oanda.client.make_client`) builds both the REST and the streaming
oandapyV20 clients from it, so no other module reads or passes the token around.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from mbats.config import Settings, get_settings
from mbats.errors import ConfigError

SIM_ENVIRONMENT = "sim"
STREAM_CONNECT_TIMEOUT = 10.0  # seconds to open the price stream; reads wait for the heartbeat timeout


@dataclass(frozen=True)
class OandaConfig:
    """Where and as whom to talk to OANDA v20 (practice, live or the local simulator)."""

    environment: str
    token: SecretStr = field(repr=False)
    account_id: str | None
    sim_url: str
    timeout_seconds: float
    stream_timeout_seconds: float  # a stream silent this long (no price, no heartbeat) is reconnected
    requests_per_second: float
    retry_attempts: int
    retry_max_wait: float

    @property
    def is_sim(self) -> bool:
        return self.environment == SIM_ENVIRONMENT

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "OandaConfig":
        settings = settings or get_settings()
        if settings.oanda_token is None or not settings.oanda_token.get_secret_value():
            raise ConfigError("no OANDA token: set MBATS_OANDA_TOKEN (and MBATS_OANDA_ACCOUNT_ID)")
        return cls(
            environment=settings.oanda_environment,
            token=settings.oanda_token,
            account_id=settings.oanda_account_id,
            sim_url=settings.oanda_sim_url,
            timeout_seconds=settings.oanda_timeout_seconds,
            stream_timeout_seconds=settings.live_heartbeat_timeout,
            requests_per_second=settings.oanda_requests_per_second,
            retry_attempts=max(1, settings.oanda_retry_attempts),
            retry_max_wait=settings.oanda_retry_max_wait,
        )
