"""The HTTP endpoint: each request is checked in order of cost, and answered 2xx only
once its event is in the stream.

1. 503 when this replica cannot keep data now (stopped, Redis down, too many waiting)
2. 413 when ``Content-Length`` is over the limit (before reading a byte of the body)
3. 415 when the content type is not one the endpoint takes
4. 401 when an API key or bearer token is missing or wrong
5. the body, within the request deadline; 413 when it grows over the limit
6. 401 when a signature (GitHub-style, or timestamped within the replay window)
   does not match
7. 429 with ``Retry-After`` when the client is over its rate limit (all replicas)
8. 400 when it is not JSON, 422 with each schema error when it breaks the contract
9. queued for the next fenced append; 200 once appended (or when it is a
   redelivery of an appended one), 503 when the append failed or the deadline passed
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from framework.core import Logger, RedisUnavailableError, redis_failures
from providers.webhook.auth import Authenticator, AuthError, Caller
from providers.webhook.config import WebhookConfig
from providers.webhook.inbox import Inbox
from providers.webhook.intake import Delivery, Intake, IntakeError, dedupe_key_of
from providers.webhook.rate_limit import RateLimiter

# Told to a caller answered 503: when trying again is worth it.
RETRY_AFTER_UNAVAILABLE_S = 1


@dataclass(frozen=True)
class Endpoint:
    """What both endpoints (HTTP and WebSocket) check requests with."""

    config: WebhookConfig
    auth: Authenticator
    intake: Intake
    inbox: Inbox
    limiter: RateLimiter | None
    logger: Logger

    def refuse(self, status: int, message: str, *, client: str | None = None,
               details: list[dict[str, str]] | None = None,
               headers: Mapping[str, str] | None = None) -> web.Response:
        self.logger.info("webhook_refused", status=status, reason=message, client=client)
        body: dict[str, Any] = {"error": message}
        if details:
            body["details"] = details
        return web.json_response(body, status=status, headers=headers)

    def unavailable(self, message: str, client: str | None = None) -> web.Response:
        return self.refuse(503, message, client=client,
                           headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)})

    async def over_limit(self, client: str) -> int | None:
        """Seconds the client must wait (429), or None. Raises RedisUnavailableError
        when Redis is down, out of memory or slower than the request deadline."""
        if self.limiter is None:
            return None
        try:
            async with redis_failures(), asyncio.timeout(self.config.request_timeout_ms / 1000):
                return await self.limiter.retry_after_s(client)
        except TimeoutError as exc:
            raise RedisUnavailableError("rate limit not checked in time") from exc

    def caller_by_headers(self, request: web.Request) -> Caller | None:
        """The caller when the mode authenticates by headers; None for signed modes."""
        if self.auth.needs_body:
            return None
        return self.auth.by_headers(request.headers, request.remote or "unknown")


class HttpHandler:
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._config = endpoint.config
        self._timeout_s = endpoint.config.request_timeout_ms / 1000
        # Media types are case-insensitive (RFC 9110); aiohttp gives them lower-cased.
        self._content_types = {kind.lower() for kind in endpoint.config.content_types}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = self._endpoint
        if not endpoint.inbox.accepting:
            return endpoint.unavailable("not accepting events now (the stream is unavailable)")
        length = request.content_length
        if length is not None and length > self._config.max_body_bytes:
            return endpoint.refuse(413, f"the body is over {self._config.max_body_bytes} bytes")
        if request.content_type.lower() not in self._content_types:
            return endpoint.refuse(415, f"content type {request.content_type!r} is not one "
                                   f"of {', '.join(self._config.content_types)}")
        try:
            caller = endpoint.caller_by_headers(request)
        except AuthError as exc:
            return endpoint.refuse(401, str(exc))
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._receive(request, caller)
        except TimeoutError:
            return endpoint.unavailable(f"not saved within {self._timeout_s:g} s")

    async def _receive(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        endpoint = self._endpoint
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return endpoint.refuse(413, f"the body is over {self._config.max_body_bytes} bytes")
        try:
            if caller is None:
                caller = endpoint.auth.by_signature(request.headers, body)
        except AuthError as exc:
            return endpoint.refuse(401, str(exc))
        try:
            wait_s = await endpoint.over_limit(caller.client)
        except RedisUnavailableError:
            return endpoint.unavailable("rate limit cannot be checked now", caller.client)
        if wait_s is not None:
            return endpoint.refuse(429, "rate limit exceeded", client=caller.client,
                                   headers={"Retry-After": str(wait_s)})
        try:
            delivery = self._delivery(request, caller, body)
        except IntakeError as exc:
            return endpoint.refuse(exc.status, exc.message, client=caller.client,
                                   details=exc.details)
        return await self._saved(delivery, caller)

    def _delivery(self, request: web.Request, caller: Caller, body: bytes) -> Delivery:
        config = self._config
        delivery_id = (request.headers.get(config.delivery_id_header)
                       if config.delivery_id_header else None)
        # A signature covers the body (and its timestamp): a replay of it is the same
        # delivery whatever an unsigned header says.
        dedupe = caller.signature_key or dedupe_key_of(
            caller.client, request.headers.get(config.idempotency_header) or delivery_id)
        return self._endpoint.intake.delivery(body, client=caller.client, dedupe_key=dedupe,
                                              delivery_id=delivery_id)

    async def _saved(self, delivery: Delivery, caller: Caller) -> web.StreamResponse:
        endpoint = self._endpoint
        if not endpoint.inbox.offer(delivery):
            return endpoint.unavailable("not accepting events now (stopped or too many "
                                        "waiting)", caller.client)
        try:
            kept = await delivery.saved
        except BaseException:
            endpoint.inbox.withdraw(delivery)
            raise
        if not kept:
            return endpoint.unavailable("the event was not saved", caller.client)
        return web.json_response({"status": "saved", "itemId": delivery.item_id})
