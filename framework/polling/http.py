"""HTTP for polling providers: httpx with the connector's limits, tenacity
retries with the connector's backoff, Retry-After, and conditional requests.

Limits: each attempt has a total deadline (``requestTimeoutMs`` for connecting,
sending and reading the whole body: httpx's own timeouts are per read, so a
source trickling a byte a second would never time out), a body limit
(``maxBodyBytes``, streamed) and redirects that leave the credentials behind
(:mod:`framework.polling.exchange`). A Retry-After is capped at
``maxRetryAfterMs`` (logged as ``retry_after_capped``).

Status handling: 2xx and 304 are answers; 408, 429 and 5xx are retried
(429/503 wait at least their Retry-After); any other 4xx fails at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
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
from framework.polling.exchange import body_chunks, exchange
from framework.polling.json_slices import loads_in_slices

_RETRYABLE_STATUS = {408, 429}
_BODY_EXCERPT_CHARS = 200
_UTF8_BOM = b"\xef\xbb\xbf"
# Smaller bodies are decoded in one call: a few ms on a loaded machine.
SMALL_BODY_BYTES = 64 * 1024


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
        # The source's headers are added to each request here, not as the client's
        # defaults, so that a redirect to another origin can leave them behind.
        self._headers = httpx.Headers(headers or {})
        self._client = httpx.AsyncClient(
            timeout=config.request_timeout_ms / 1000, transport=transport, follow_redirects=False
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
        headers = httpx.Headers(self._headers)
        headers.update(kwargs.pop("headers", None) or {})
        request = self._client.build_request(method, url, headers=headers, **kwargs)
        try:
            async with asyncio.timeout(self._config.request_timeout_ms / 1000):
                response = await exchange(
                    self._client, request, max_body_bytes=self._config.max_body_bytes,
                    connector=name, on_cross_origin=self._log_cross_origin)
        except (TimeoutError, httpx.TimeoutException):
            raise TransientSourceError(
                f"{method} {_safe_url(url)} did not complete within requestTimeoutMs="
                f"{self._config.request_timeout_ms} (connecting, sending and reading the "
                "whole body)",
                connector=name,
            ) from None
        except httpx.TransportError as exc:
            raise TransientSourceError(
                f"{method} {_safe_url(url)} failed: {type(exc).__name__}: {exc}", connector=name
            ) from None
        self._raise_for_status(response)
        return response

    def _raise_for_status(self, response: httpx.Response) -> None:
        try:
            raise_for_status(
                response,
                now_s=self._clock.time(),
                connector=self._config.name,
                max_wait_s=self._config.retry_config.max_delay_ms / 1000,
            )
        except TransientSourceError as exc:
            self._cap_retry_after(exc)
            raise

    def _cap_retry_after(self, exc: TransientSourceError) -> None:
        cap_s = self._config.max_retry_after_ms / 1000
        if exc.retry_after_s is not None and exc.retry_after_s > cap_s:
            self._log.warning("retry_after_capped", retry_after_s=exc.retry_after_s,
                              max_retry_after_s=cap_s)
            exc.retry_after_s = cap_s

    def _log_cross_origin(self, origin: str, target: str, dropped: list[str]) -> None:
        self._log.warning("redirect_to_other_origin", origin=origin, target=target,
                          dropped_headers=dropped)

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
    """The body as JSON, or :class:`MalformedResponseError` saying where it broke
    (nesting deeper than orjson's 1,024 levels included: never a RecursionError)."""
    try:
        return orjson.loads(response.content.removeprefix(_UTF8_BOM))
    except ValueError as exc:
        raise _not_json(response, exc, connector) from None


async def read_json(response: httpx.Response, *, connector: str) -> Any:
    """:func:`parse_json` for a body of any size: a big one is decoded in slices
    (:mod:`framework.polling.json_slices`) from the chunks it came in, so that the
    loop is never held long."""
    chunks = body_chunks(response)
    if sum(len(chunk) for chunk in chunks) <= SMALL_BODY_BYTES:
        return parse_json(response, connector=connector)
    try:
        return await loads_in_slices(chunks)
    except ValueError as exc:
        raise _not_json(response, exc, connector) from None


def _not_json(response: httpx.Response, exc: ValueError, connector: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"{_safe_url(str(response.request.url))}: body is not valid JSON ({exc}): "
        f"{_excerpt(response)}",
        connector=connector,
    )


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
    # Decoded from the body's first bytes only: a body of tens of MB is never joined
    # or decoded whole to quote 200 characters of it.
    head, wanted = [], _BODY_EXCERPT_CHARS * 4 + 4  # 4: the longest UTF-8 character
    for chunk in body_chunks(response):
        head.append(chunk[:wanted])
        wanted -= len(head[-1])
        if wanted <= 0:
            break
    encoding = response.charset_encoding or "utf-8"
    try:
        text = b"".join(head).decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        text = b"".join(head).decode("utf-8", errors="replace")
    text = text.strip().replace("\n", " ")
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
