"""HTTP for polling providers: httpx with the connector's timeout, tenacity
retries with the connector's backoff, Retry-After, and conditional requests.

Status handling: 2xx and 304 are answers; 408, 429 and 5xx are retried
(429/503 wait at least their Retry-After); any other 4xx fails at once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from framework.core.clock import Clock
from framework.core.errors import (
    MalformedResponseError,
    PermanentSourceError,
    RateLimitedError,
    TransientSourceError,
)
from framework.core.logs import Logger
from framework.core.redaction import is_secret_key
from framework.polling.config import ConnectorConfig, RetryConfig

_RETRYABLE_STATUS = {408, 429}
_BODY_EXCERPT_CHARS = 200


def backoff_delay_s(retry: RetryConfig, attempt: int, rng: random.Random) -> float:
    """Delay before attempt ``attempt + 1``: exponential from baseDelayMs, capped
    at maxDelayMs, spread by +/- jitterRatio."""
    delay_ms = min(float(retry.max_delay_ms), retry.base_delay_ms * 2.0 ** max(0, attempt - 1))
    jitter = 1.0 + rng.uniform(-retry.jitter_ratio, retry.jitter_ratio)
    return max(0.0, delay_ms * jitter / 1000)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_s)
    except (TypeError, ValueError):
        return None


class HttpClient:
    """One connector's HTTP client (``aclose`` it when the connector closes)."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        clock: Clock,
        logger: Logger,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._log = logger
        self._rng = rng or random.Random()
        self._client = httpx.AsyncClient(
            timeout=config.request_timeout_ms / 1000,
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=True,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET with retries; returns a 2xx or 304 response, raises otherwise."""
        return await self.request("GET", url, params=params, headers=headers)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._config.max_retries + 1),
            retry=retry_if_exception(_worth_retrying_now),
            wait=self._wait,
            sleep=self._clock.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        response: httpx.Response = await retrying(self._send_once, method, url, **kwargs)
        return response

    async def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        name = self._config.name
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise TransientSourceError(
                f"{method} {_safe_url(url)} timed out after {self._config.request_timeout_ms} ms",
                connector=name,
            ) from None
        except httpx.TransportError as exc:
            raise TransientSourceError(
                f"{method} {_safe_url(url)} failed: {type(exc).__name__}: {exc}", connector=name
            ) from None
        self._raise_for_status(response)
        return response

    def _raise_for_status(self, response: httpx.Response) -> None:
        raise_for_status(
            response,
            now_s=self._clock.time(),
            connector=self._config.name,
            max_wait_s=self._config.retry_config.max_delay_ms / 1000,
        )

    def _wait(self, state: RetryCallState) -> float:
        delay = backoff_delay_s(self._config.retry_config, state.attempt_number, self._rng)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientSourceError) and exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        return delay

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else None
        self._log.warning(
            "request_retry", attempt=state.attempt_number, wait_s=wait_s, error=str(exc)
        )


def raise_for_status(
    response: httpx.Response,
    *,
    now_s: float,
    connector: str | None = None,
    max_wait_s: float | None = None,
) -> None:
    """Return for an answer (< 400); raise :class:`TransientSourceError` for 408, 429
    and 5xx (with their Retry-After; :class:`RateLimitedError` when it exceeds
    ``max_wait_s``) and :class:`PermanentSourceError` for any other 4xx."""
    status = response.status_code
    if status < 400:
        return
    what = (
        f"{response.request.method} {_safe_url(str(response.request.url))} answered "
        f"{status} {response.reason_phrase}: {_excerpt(response)}"
    )
    if status not in _RETRYABLE_STATUS and status < 500:
        raise PermanentSourceError(what, connector=connector)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now_s)
    if retry_after is not None and max_wait_s is not None and retry_after > max_wait_s:
        raise RateLimitedError(
            f"{what} (Retry-After {retry_after:.0f} s exceeds maxDelayMs; "
            "next attempt at a later poll)",
            connector=connector,
            retry_after_s=retry_after,
        )
    raise TransientSourceError(what, connector=connector, retry_after_s=retry_after)


def _worth_retrying_now(exc: BaseException) -> bool:
    # A long Retry-After is honoured by the next poll, not by blocking this one.
    return isinstance(exc, TransientSourceError) and not isinstance(exc, RateLimitedError)


def parse_json(response: httpx.Response, *, connector: str) -> Any:
    """The body as JSON, or :class:`MalformedResponseError` saying where it broke."""
    try:
        return response.json()
    except ValueError as exc:
        raise MalformedResponseError(
            f"{_safe_url(str(response.request.url))}: body is not valid JSON ({exc}): "
            f"{_excerpt(response)}",
            connector=connector,
        ) from None


def describe_shape(body: Any) -> str:
    """A JSON value's shape for an error message: an object's first keys (and its
    ``message``, which APIs use to say what went wrong), else its type."""
    if isinstance(body, dict):
        if not body:
            return "{}"
        shape = "an object with keys " + ", ".join(sorted(body)[:8])
        message = body.get("message")
        return shape + (f" (message: {message})" if message else "")
    if body is None:
        return "null"
    return f"a JSON {type(body).__name__}"


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if len(text) > _BODY_EXCERPT_CHARS:
        return text[:_BODY_EXCERPT_CHARS] + "..."
    return text or "(empty body)"


def _safe_url(url: str) -> str:
    """The URL with secret-looking query parameters and passwords hidden."""
    parsed = httpx.URL(url)
    params = [(k, "***" if is_secret_key(k) else v) for k, v in parsed.params.multi_items()]
    safe = parsed.copy_with(params=params) if params else parsed
    if safe.password:
        safe = safe.copy_with(password="***")
    return str(safe)
