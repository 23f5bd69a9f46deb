"""The per-connector lease ``lease:{name}``: at most one running instance.

Taken with ``SET NX PX`` and a unique owner token, extended by a
compare-and-extend script, released by compare-and-delete. The token is also
the fencing token: every commit checks it inside Redis (see ``commit.lua``),
so an instance that lost its lease cannot publish even if it has not noticed.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from framework.core.keys import lease_key
from framework.core.scripts import lua
from framework.core.tokens import new_owner_token


@dataclass(frozen=True)
class LeaseInfo:
    holder: str | None
    ttl_ms: int | None


class Lease:
    """One connector's lease, as seen by one instance."""

    def __init__(
        self, redis: Redis, name: str, *, ttl_s: float, token: str | None = None,
        key: str | None = None,
    ) -> None:
        """``key``: the lease's key under the fleet's KeyScheme (default ``lease:NAME``)."""
        self.name = name
        self.key = key or lease_key(name)
        self.token = token or new_owner_token()
        self.ttl_s = ttl_s
        self.held = False
        self._redis = redis
        self._extend = redis.register_script(lua("framework.polling", "lease_extend"))
        self._release = redis.register_script(lua("framework.polling", "lease_release"))

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this instance now holds it."""
        taken = await self._redis.set(self.key, self.token, nx=True, px=self._ttl_ms)
        if not taken:
            # A restart of this very process with the same token still owns it.
            taken = bool(await self._extend(keys=[self.key], args=[self.token, self._ttl_ms]))
        self.held = bool(taken)
        return self.held

    async def renew(self) -> bool:
        """Extend the TTL; False (and ``held`` cleared) if the lease is no longer ours."""
        self.held = bool(await self._extend(keys=[self.key], args=[self.token, self._ttl_ms]))
        return self.held

    async def release(self) -> bool:
        """Delete the lease if it is still ours."""
        self.held = False
        return bool(await self._release(keys=[self.key], args=[self.token]))

    async def info(self) -> LeaseInfo:
        return await read_lease(self._redis, self.name, key=self.key)


async def read_lease(redis: Redis, name: str, *, key: str | None = None) -> LeaseInfo:
    """Who holds ``lease:{name}`` (or ``key``) and for how many more milliseconds."""
    key = key or lease_key(name)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.pttl(key)
        holder, ttl_ms = await pipe.execute()
    return LeaseInfo(holder=holder, ttl_ms=ttl_ms if ttl_ms >= 0 else None)
