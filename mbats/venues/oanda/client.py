"""The OANDA v20 clients: oandapyV20 plus a rate cap, retries and errors a user can act on.

:func:`make_client` is the one factory: from an :class:`OandaConfig` it builds the REST client
and, on demand (:meth:`OandaClient.stream_api`), the streaming client, so market-data downloads
and live sessions share one construction path and nothing else handles the token.

oandapyV20 picks its hosts from the module-level ``TRADING_ENVIRONMENTS`` table; the simulator is
added there as environment ``sim`` (URL from ``MBATS_OANDA_SIM_URL``), so the same client code
talks to OANDA practice, live or the local simulator.

The token only ever lives in the config and the requests sessions' Authorization header: it is
never logged, printed or put in an error message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from oandapyV20 import API
from oandapyV20 import oandapyV20 as oanda_module
from oandapyV20.endpoints.apirequest import APIRequest
from oandapyV20.exceptions import V20Error
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from mbats.config import Settings
from mbats.errors import ConfigError, MbatsError, NotFoundError, ServiceUnavailableError
from mbats.venues.oanda.config import SIM_ENVIRONMENT, STREAM_CONNECT_TIMEOUT, OandaConfig

log = logging.getLogger(__name__)
# oandapyV20 logs every failed request at ERROR; keep it off stderr unless the app configures logging
logging.getLogger("oandapyV20").addHandler(logging.NullHandler())
__all__ = ["SIM_ENVIRONMENT", "OandaClient", "OandaConfig", "RateLimiter", "make_client", "register_environment"]


def register_environment(name: str, url: str, stream_url: str | None = None) -> None:
    """Point oandapyV20 environment ``name`` at ``url`` (plain HTTP on loopback is fine)."""
    url = url.rstrip("/")
    oanda_module.TRADING_ENVIRONMENTS[name] = {"api": url, "stream": (stream_url or url).rstrip("/")}


class RateLimiter:
    """Spaces calls at least 1/rate seconds apart across threads (OANDA allows 120 req/s)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


def _error_message(exc: V20Error) -> str:
    """OANDA's ``errorMessage`` from the body, or the body itself, trimmed to one line."""
    try:
        body = json.loads(exc.msg)
        text = body.get("errorMessage") or exc.msg
    except (ValueError, TypeError, AttributeError):
        text = str(exc.msg)
    return " ".join(str(text).split())[:300]


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, V20Error):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


@dataclass
class OandaClient:
    """oandapyV20 ``API`` with a rate cap, tenacity retries and MBATS errors; counts requests."""

    api: API
    config: OandaConfig = field(repr=False)
    limiter: RateLimiter
    requests_made: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stream_api: API | None = field(default=None, repr=False)

    @property
    def environment(self) -> str:
        return self.config.environment

    @property
    def account_id(self) -> str | None:
        return self.config.account_id

    @property
    def attempts(self) -> int:
        return self.config.retry_attempts

    @property
    def max_wait(self) -> float:
        return self.config.retry_max_wait

    @property
    def base_url(self) -> str:
        return oanda_module.TRADING_ENVIRONMENTS[self.environment]["api"]

    def stream_api(self) -> API:
        """The streaming client (price stream): same token and host table, a read timeout of the
        heartbeat timeout so a silent stream raises instead of hanging. Built once, on first use."""
        if self._stream_api is None:
            self._stream_api = _build_api(self.config, (STREAM_CONNECT_TIMEOUT, self.config.stream_timeout_seconds))
        return self._stream_api

    def advance_sim_clock(self, bars: int = 1) -> None:
        """Step the simulator's replay clock (its admin endpoint); only the simulator has one."""
        if not self.config.is_sim:
            raise ConfigError("only the simulator has a replay clock (MBATS_OANDA_ENVIRONMENT=sim)")
        resp = self.api.client.post(f"{self.base_url}/admin/clock/advance", json={"bars": bars}, timeout=10)
        resp.raise_for_status()

    def require_account(self) -> str:
        if not self.account_id:
            raise ConfigError("no OANDA account id: set MBATS_OANDA_ACCOUNT_ID")
        return self.account_id

    def _send(self, endpoint: APIRequest) -> dict:
        self.limiter.wait()
        with self._lock:
            self.requests_made += 1
        return self.api.request(endpoint)

    def _count_retry(self, state) -> None:
        with self._lock:
            self.retries += 1
        log.warning("OANDA request %s failed (%s); retry %d", state.args[0] if state.args else "",
                    _describe(state.outcome.exception()), state.attempt_number)

    def request(self, endpoint: APIRequest) -> dict:
        """Send one request; retry 429/5xx/timeouts with jittered exponential backoff."""
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential_jitter(initial=0.2, max=self.max_wait),
            stop=stop_after_attempt(self.attempts),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            return retrying(self._send, endpoint)
        except V20Error as exc:
            raise self._translate(exc, endpoint) from None
        except requests.RequestException as exc:
            raise ServiceUnavailableError(
                f"OANDA ({self.environment}, {self.base_url}) did not answer after {self.attempts} tries: "
                f"{_describe(exc)}; check the network or MBATS_OANDA_ENVIRONMENT / MBATS_OANDA_SIM_URL"
            ) from None

    def send_once(self, endpoint: APIRequest, lookup: Callable[[], dict | None]) -> tuple[dict | None, dict | None]:
        """Send a request that must take effect at most once (an order POST); → (answer, found).

        A failed POST is ambiguous: OANDA may have processed it and only the answer was lost. So
        it is never resent blindly: after each transient failure ``lookup()`` asks OANDA whether
        it happened (by client order id, in the order list and the transaction history); if it
        did, its record comes back as ``found`` and nothing is resent. A timeout or a dropped
        connection may still be in flight at OANDA, so there the lookup is repeated after a pause
        before the resend. Non-transient errors (4xx) raise at once.
        """
        last: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                return self._send(endpoint), None
            except (V20Error, requests.RequestException) as exc:
                if not _is_transient(exc):
                    if isinstance(exc, V20Error):
                        raise self._translate(exc, endpoint) from None
                    raise
                last = exc
            with self._lock:
                self.retries += 1
            log.warning("OANDA %s failed (%s) on try %d: checking whether OANDA processed it before any resend",
                        endpoint, _describe(last), attempt)
            pauses = [min(self.max_wait, 0.2 * 2 ** (attempt - 1))]
            if not isinstance(last, V20Error):  # no answer at all: the request may still be running there
                pauses.append(min(self.max_wait, 1.0 + 0.5 * attempt))
            for pause in pauses:
                time.sleep(pause)
                found = lookup()
                if found is not None:
                    log.warning("OANDA had processed %s (answer lost): not sending it again", endpoint)
                    return None, found
        if isinstance(last, V20Error):
            raise self._translate(last, endpoint) from None
        raise ServiceUnavailableError(
            f"OANDA ({self.environment}, {self.base_url}) did not answer after {self.attempts} tries: "
            f"{_describe(last)}; check the network or MBATS_OANDA_ENVIRONMENT / MBATS_OANDA_SIM_URL")

    def _translate(self, exc: V20Error, endpoint: APIRequest) -> MbatsError:
        message = _error_message(exc)
        where = f"OANDA {self.environment} ({endpoint})"
        if exc.code in (401, 403):
            return ConfigError(
                f"{where} refused the credentials (HTTP {exc.code}: {message}); "
                "check MBATS_OANDA_TOKEN and MBATS_OANDA_ACCOUNT_ID (and MBATS_OANDA_ENVIRONMENT)"
            )
        if exc.code == 404:
            return NotFoundError(f"{where}: not found (HTTP 404: {message})")
        if exc.code == 429 or exc.code >= 500:
            return ServiceUnavailableError(
                f"{where} still failing after {self.attempts} tries (HTTP {exc.code}: {message})"
            )
        return MbatsError(f"{where} rejected the request (HTTP {exc.code}: {message})")


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, V20Error):
        return f"HTTP {exc.code}: {_error_message(exc)}"
    return type(exc).__name__ if exc is not None else "unknown error"


def _build_api(config: OandaConfig, timeout: float | tuple[float, float]) -> API:
    """An oandapyV20 ``API`` for the configured environment (the simulator's host registered first)."""
    if config.is_sim:
        register_environment(SIM_ENVIRONMENT, config.sim_url)
    return API(access_token=config.token.get_secret_value(), environment=config.environment,
               request_params={"timeout": timeout})


def make_client(settings: Settings | OandaConfig | None = None) -> OandaClient:
    """The client for the configured environment (practice, live or the local simulator)."""
    config = settings if isinstance(settings, OandaConfig) else OandaConfig.from_settings(settings)
    return OandaClient(api=_build_api(config, config.timeout_seconds), config=config,
                       limiter=RateLimiter(config.requests_per_second))
