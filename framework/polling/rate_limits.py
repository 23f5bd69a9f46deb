"""Rate-limit answers made readable by :class:`framework.polling.http.HttpClient`.

The client retries a 429 after its Retry-After and fails any other 4xx at once.
Many APIs say "rate limited" otherwise: a 403 (GitHub), a reset time in their
own header instead of Retry-After (GitHub's epoch second, Datadog's seconds from
now), or only a message in the body. :class:`RateLimitTransport` reads a
provider's :class:`RateLimitRules` and rewrites such an answer into a 429 whose
Retry-After is the wait; any other answer passes unchanged (a 403 that is no
rate limit stays a permanent error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from framework.core.clock import Clock
from framework.polling.config import DEFAULT_MAX_BODY_BYTES
from framework.polling.exchange import read_limited

TOO_MANY_REQUESTS = 429
# Length and encoding headers describe a body stream that was read to look for the
# message; the rewritten answer carries the body as plain content instead.
_STREAM_HEADERS = ("content-length", "content-encoding", "transfer-encoding")


@dataclass(frozen=True)
class RateLimitRules:
    """How one API says that its rate limit is exhausted.

    ``statuses``: the answers that may be a rate limit (others pass untouched).
    ``reset_header``: when the limit resets; an epoch second if ``reset_is_epoch``,
    else seconds from now. ``remaining_header``: when set, the reset is read only
    once this header says ``0``. ``body_markers``: lower-case phrases of a
    message-only limit. ``fallback_wait_s``: the wait for an exhausted limit that
    names no reset, and for a message-only limit.
    """

    name: str
    statuses: frozenset[int] = frozenset({TOO_MANY_REQUESTS})
    reset_header: str = "x-ratelimit-reset"
    reset_is_epoch: bool = False
    remaining_header: str | None = None
    body_markers: tuple[bytes, ...] = ()
    fallback_wait_s: int | None = None

    def wait_s(self, headers: httpx.Headers, body: bytes, now_s: float) -> int | None:
        """Whole seconds to wait before the next request, or None if this is no rate limit."""
        retry_after = headers.get("retry-after", "").strip()
        if retry_after.isdigit():
            return int(retry_after)
        exhausted = self.remaining_header is None or headers.get(self.remaining_header) == "0"
        reset = headers.get(self.reset_header, "").strip()
        if exhausted and reset.isdigit():
            return max(1, math.ceil(int(reset) - now_s)) if self.reset_is_epoch else int(reset)
        if exhausted and self.remaining_header is not None:
            return self.fallback_wait_s
        lowered = body.lower()
        if any(marker in lowered for marker in self.body_markers):
            return self.fallback_wait_s
        return None


class RateLimitTransport(httpx.AsyncBaseTransport):
    """Wraps the network transport; gives a rate-limit answer a 429 and its Retry-After."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, rules: RateLimitRules, *, clock: Clock,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, connector: str | None = None,
    ) -> None:
        self._inner = inner
        self._rules = rules
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._connector = connector

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code not in self._rules.statuses:
            return response
        if response.status_code == TOO_MANY_REQUESTS and "retry-after" in response.headers:
            return response  # already in the form the client reads
        response.request = request  # the client sets it only later
        read = await read_limited(response, self._max_body_bytes, connector=self._connector)
        body = read.content
        wait_s = self._rules.wait_s(response.headers, body, self._clock.time())
        if wait_s is None:
            return self._copy(request, response, body, response.status_code, response.headers)
        headers = httpx.Headers(response.headers)
        headers["Retry-After"] = str(wait_s)
        return self._copy(request, response, body, TOO_MANY_REQUESTS, headers)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _copy(
        self, request: httpx.Request, response: httpx.Response, body: bytes, status: int,
        headers: httpx.Headers,
    ) -> httpx.Response:
        kept = [(k, v) for k, v in headers.multi_items() if k.lower() not in _STREAM_HEADERS]
        extensions = dict(response.extensions)
        if status != response.status_code:
            reason = f"Too Many Requests ({self._rules.name} rate limit)"
            extensions["reason_phrase"] = reason.encode()
        return httpx.Response(status, headers=kept, content=body, extensions=extensions,
                              request=request)
