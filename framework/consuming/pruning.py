"""Removing a dead consumer from its group without losing an entry."""

from __future__ import annotations

from redis.asyncio import Redis

from framework.core import consumer_heartbeat_key, lua


async def prune_idle_consumer(redis: Redis, stream: str, group: str, consumer: str, *,
                              idle_ms: int) -> bool:
    """Remove ``consumer`` from ``group`` of ``stream`` if it has no heartbeat, holds no
    pending entry and was idle at least ``idle_ms``. True if it was removed.

    The pending and idle checks and the delete are one atomic script on the stream
    alone: XGROUP DELCONSUMER drops the consumer's pending entries, so only an empty
    consumer may go. The heartbeat, a key of another Cluster slot, is looked at just
    before: a consumer that comes back between the two holds nothing yet, and its next
    XREADGROUP creates it again, so nothing is lost either way."""
    if await redis.exists(consumer_heartbeat_key(group, consumer)):
        return False
    prune = redis.register_script(lua("framework.consuming", "consumer_prune"))
    removed = await prune(keys=[stream], args=[group, consumer, idle_ms])
    return bool(removed)
