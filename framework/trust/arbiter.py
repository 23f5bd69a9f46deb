"""The ResourceArbiter: Redis permits so two executors never drive one actuator at once.

A resource (``valve:V-01``) has up to ``max_holders`` permits (1 = exclusive;
more for a resource that tolerates a few concurrent users). Each resource's
holders live in a sorted set ``permit:{R}:holders`` scored by expiry on the
Redis clock; taking, renewing and releasing are one Lua script each
(``permit_acquire``, ``permit_renew``, ``permit_release``), so expired holders
are swept and the count checked atomically.

Every grant increments ``permit:{R}:fence`` (INCR, never expires) and hands
the new value out as the **fencing token**. A holder that stalls past its TTL
loses the permit to the next one, who gets a higher token; a target that
remembers the highest token it accepted (:class:`FencingGuard`, or the device
itself) then refuses the stale holder's late write. The guard only fences
writes that go through it: a device that checks tokens itself also closes the
window between the check and the write.

:meth:`ResourceArbiter.permit` is the way to use it: an async context manager
that waits (polling, at most ``poll_interval_s`` between tries) up to the wait
timeout, renews the permit every third of its TTL while the body runs, and
always releases it, even when the body fails or is cancelled. A holder that dies
keeps the resource only until its TTL passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from prometheus_client import CollectorRegistry, Histogram
from redis.asyncio import Redis

from framework.core.cancellation import cancel_and_wait
from framework.core.clock import Clock
from framework.core.errors import PermitTimeoutError, StaleFencingTokenError
from framework.core.keys import (
    DEFAULT_PERMIT_TTL_S,
    DEFAULT_PERMIT_WAIT_TIMEOUT_S,
    fence_seen_key,
    permit_keys,
)
from framework.core.logs import Logger
from framework.core.scripts import lua
from framework.core.tokens import new_owner_token

# Renew at this fraction of the TTL: two renewals may fail before the permit expires.
_RENEW_FRACTION = 1 / 3


@dataclass
class Permit:
    """One permit held on ``resource``; ``lost`` turns True if a renewal found it gone."""

    resource: str
    holder: str
    fencing_token: int
    ttl_s: float
    wait_s: float
    lost: bool = field(default=False)


def permit_wait_histogram(registry: CollectorRegistry) -> Histogram:
    """``connector_permit_wait_seconds{resource_kind,outcome}``: time spent waiting."""
    return Histogram(
        "connector_permit_wait_seconds",
        "Time spent waiting for a resource permit (outcome: granted, timeout).",
        ["resource_kind", "outcome"],
        buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        registry=registry,
    )


class ResourceArbiter:
    """Grants, renews and releases permits on named resources."""

    def __init__(
        self,
        redis: Redis,
        *,
        clock: Clock,
        logger: Logger,
        ttl_s: float = DEFAULT_PERMIT_TTL_S,
        poll_interval_s: float = 0.05,
        wait_histogram: Histogram | None = None,
    ) -> None:
        """``wait_histogram``: :func:`permit_wait_histogram` (None: waits not measured)."""
        self.ttl_s = ttl_s
        self._redis = redis
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._logger = logger
        self._wait_histogram = wait_histogram
        self._acquire = redis.register_script(lua("framework.trust", "permit_acquire"))
        self._renew = redis.register_script(lua("framework.trust", "permit_renew"))
        self._release = redis.register_script(lua("framework.trust", "permit_release"))

    @contextlib.asynccontextmanager
    async def permit(
        self,
        resource: str,
        *,
        wait_timeout_s: float = DEFAULT_PERMIT_WAIT_TIMEOUT_S,
        max_holders: int = 1,
        ttl_s: float | None = None,
    ) -> AsyncIterator[Permit]:
        """Hold a permit on ``resource`` for the body; renewed while held, always released."""
        held = await self.acquire(
            resource, wait_timeout_s=wait_timeout_s, max_holders=max_holders, ttl_s=ttl_s
        )
        renewer = asyncio.create_task(self._keep_renewed(held), name=f"permit:{resource}")
        try:
            yield held
        finally:
            await cancel_and_wait(renewer)
            # Shielded: a cancelled body must still give the resource back.
            await asyncio.shield(self.release(held))

    async def acquire(
        self,
        resource: str,
        *,
        wait_timeout_s: float = DEFAULT_PERMIT_WAIT_TIMEOUT_S,
        max_holders: int = 1,
        ttl_s: float | None = None,
    ) -> Permit:
        """Wait up to ``wait_timeout_s`` for a permit; :class:`PermitTimeoutError` if none."""
        if max_holders < 1:
            raise ValueError(f"max_holders must be at least 1, not {max_holders}")
        ttl = ttl_s if ttl_s is not None else self.ttl_s
        holder = new_owner_token()
        started = self._clock.monotonic()
        deadline = started + wait_timeout_s
        while True:
            granted, value = await self._try_acquire(resource, holder, ttl, max_holders)
            now = self._clock.monotonic()
            if granted:
                self._observe_wait(resource, "granted", now - started)
                return Permit(resource=resource, holder=holder, fencing_token=value,
                              ttl_s=ttl, wait_s=now - started)
            if now >= deadline:
                self._observe_wait(resource, "timeout", now - started)
                raise PermitTimeoutError(
                    f"no permit free within {wait_timeout_s:g} s "
                    f"({max_holders} holder(s) allowed)", resource=resource,
                )
            # The first holder's expiry bounds the wait, but a release may come sooner.
            await self._clock.sleep(min(self._poll_interval_s, value / 1000, deadline - now))

    async def renew(self, held: Permit) -> bool:
        """Extend the permit's TTL; False (and ``held.lost`` set) if it is gone."""
        holders, tokens, _ = permit_keys(held.resource)
        renewed = bool(await self._renew(
            keys=[holders, tokens], args=[held.holder, _ms(held.ttl_s)]
        ))
        if not renewed:
            held.lost = True
        return renewed

    async def release(self, held: Permit) -> bool:
        """Give the permit back; False if it had already expired."""
        holders, tokens, _ = permit_keys(held.resource)
        return bool(await self._release(keys=[holders, tokens], args=[held.holder]))

    async def holders(self, resource: str) -> dict[str, int]:
        """Current holder ids of ``resource`` and their fencing tokens (for ops)."""
        holders, tokens, _ = permit_keys(resource)
        now_s, now_us = await self._redis.time()
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        # Members are str: every client is built with decode_responses=True.
        live = cast(list[str], await self._redis.zrangebyscore(holders, f"({now_ms}", "+inf"))
        if not live:
            return {}
        values = await self._redis.hmget(tokens, live)
        return {h: int(t) for h, t in zip(live, values, strict=True) if t is not None}

    async def _try_acquire(
        self, resource: str, holder: str, ttl_s: float, max_holders: int
    ) -> tuple[bool, int]:
        granted, value = await self._acquire(
            keys=list(permit_keys(resource)), args=[holder, _ms(ttl_s), max_holders]
        )
        return bool(granted), max(int(value), 0)

    async def _keep_renewed(self, held: Permit) -> None:
        while True:
            await self._clock.sleep(held.ttl_s * _RENEW_FRACTION)
            try:
                if not await self.renew(held):
                    self._logger.error("permit_lost", resource=held.resource,
                                       fencing_token=held.fencing_token)
                    return
            except Exception as exc:
                # Keep trying: the permit survives two missed renewals.
                self._logger.warning("permit_renewal_failed", resource=held.resource,
                                     error=str(exc))

    def _observe_wait(self, resource: str, outcome: str, wait_s: float) -> None:
        if self._wait_histogram is not None:
            self._wait_histogram.labels(resource_kind(resource), outcome).observe(wait_s)


class FencingGuard:
    """What a target does with fencing tokens: accept a token unless it already
    accepted a newer one (``fence:seen:{target}``, checked and set by one script)."""

    def __init__(self, redis: Redis) -> None:
        self._check = redis.register_script(lua("framework.trust", "fence_check"))

    async def accept(self, target: str, token: int) -> None:
        """Record ``token`` as seen by ``target``; :class:`StaleFencingTokenError` if stale."""
        accepted, newest = await self._check(keys=[fence_seen_key(target)], args=[token])
        if not accepted:
            raise StaleFencingTokenError(resource=target, token=token, newest_token=int(newest))


def resource_kind(resource: str) -> str:
    """``valve`` for ``valve:V-01``: a bounded label for metrics."""
    return resource.split(":", 1)[0]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
