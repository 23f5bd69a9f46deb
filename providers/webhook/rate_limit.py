"""The rate limit per client, shared by every replica through Redis
(``lua/rate_limit.lua``: a fixed window counted with INCR, expiring with the window).

A Redis that does not answer refuses the request (503 at the caller): the request
could not be kept anyway, and no client gets past the limit unchecked."""

from __future__ import annotations

import math

from redis.asyncio import Redis

from framework.core import lua
from providers.webhook.config import RateLimit


class RateLimiter:
    def __init__(self, redis: Redis, limit: RateLimit, key_prefix: str) -> None:
        self._limit = limit
        self._window_ms = max(1, int(limit.window_s * 1000))
        self._prefix = key_prefix
        self._script = redis.register_script(lua("providers.webhook", "rate_limit"))

    async def retry_after_s(self, client: str) -> int | None:
        """None when ``client`` may pass now; else whole seconds until it may (>= 1)."""
        left_ms = int(await self._script(keys=[f"{self._prefix}{client}"],
                                         args=[self._limit.requests, self._window_ms]))
        return None if left_ms <= 0 else max(1, math.ceil(left_ms / 1000))
