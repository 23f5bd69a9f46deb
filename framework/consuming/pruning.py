"""Removing a dead consumer from its group without losing an entry."""

from __future__ import annotations

from redis.asyncio import Redis

from framework.core import consumer_heartbeat_key, lua


async def prune_idle_consumer(redis: Redis, stream: str, group: str, consumer: str, *,
                              idle_ms: int) -> bool:
    """Remove ``consumer`` from ``group`` of ``stream`` if it holds no pending entry, has
    no heartbeat and was idle at least ``idle_ms``; checked and removed in one atomic
    step (a consumer active again is kept). True if it was removed."""
    prune = redis.register_script(lua("framework.consuming", "consumer_prune"))
    removed = await prune(keys=[stream, consumer_heartbeat_key(group, consumer)],
                          args=[group, consumer, idle_ms])
    return bool(removed)
