"""GitHub's rate-limit answers, made readable by :class:`framework.polling.http.HttpClient`.

GitHub answers an exhausted limit with 403 *or* 429 (REST docs, "Troubleshooting
the REST API"): the primary limit says ``x-ratelimit-remaining: 0`` and the epoch
second ``x-ratelimit-reset``; a secondary limit sends ``retry-after`` or only a
message, after which one should wait at least a minute. The framework retries 429
by its Retry-After and fails any other 4xx at once, so this transport rewrites a
rate-limit 403 into a 429 and states the wait as a Retry-After. Any other 403
(a token without access) is left alone and stays a permanent error.
"""

from __future__ import annotations

import math

import httpx

from framework.core import Clock

SECONDARY_LIMIT_WAIT_S = 60
_SECONDARY_MARKERS = (b"secondary rate limit", b"abuse detection")


class RateLimitTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, *, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code not in (403, 429):
            return response
        body = await response.aread()
        wait_s = rate_limit_wait_s(response.headers, body, self._clock.time())
        if wait_s is None:
            return _copy(request, response, body, response.status_code, response.headers)
        headers = httpx.Headers(response.headers)
        headers["Retry-After"] = str(wait_s)
        return _copy(request, response, body, 429, headers)

    async def aclose(self) -> None:
        await self._inner.aclose()


def rate_limit_wait_s(headers: httpx.Headers, body: bytes, now_s: float) -> int | None:
    """Whole seconds to wait before the next request, or None if this is no rate limit."""
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return int(retry_after)
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "").strip()
        if reset.isdigit():
            return max(1, math.ceil(int(reset) - now_s))
        return SECONDARY_LIMIT_WAIT_S
    lowered = body.lower()
    if any(marker in lowered for marker in _SECONDARY_MARKERS):
        return SECONDARY_LIMIT_WAIT_S
    return None


def _copy(
    request: httpx.Request, response: httpx.Response, body: bytes, status: int,
    headers: httpx.Headers,
) -> httpx.Response:
    # The body was read to look for the message, so it is handed on as content;
    # the length and encoding headers would describe the consumed stream.
    kept = [(k, v) for k, v in headers.multi_items()
            if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
    extensions = dict(response.extensions)
    if status != response.status_code:
        extensions["reason_phrase"] = b"Too Many Requests (GitHub rate limit)"
    return httpx.Response(status, headers=kept, content=body, extensions=extensions,
                          request=request)
