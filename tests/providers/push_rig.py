"""What the push-source tests (amqp, mqtt, ble, cdc, imap) share: a connector's
context with its lease taken, and polling until the stream holds what is expected
(always within a deadline: a connector that stops delivering fails the test)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.core import SystemClock, get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    Lease,
    PollingConnector,
    StateStore,
)

STREAM = "raw-input-signals"


async def leased_context(redis: Redis, config: ConnectorConfig) -> ConnectorContext:
    """``config``'s context, its lease taken (a previous instance's lease is deleted:
    it stands for one that has expired)."""
    lease = Lease(redis, config.name, ttl_s=30)
    await redis.delete(lease.key)
    assert await lease.try_acquire()
    return ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                            clock=SystemClock(), logger=get_logger(connector=config.name))


async def poll_until(connector: PollingConnector, redis: Redis, count: int, *,
                     stream: str = STREAM, timeout_s: float = 20.0) -> None:
    """Poll until ``stream`` holds ``count`` entries; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while await redis.xlen(stream) < count:
            await connector.poll()


async def poll_for(connector: PollingConnector, seconds: float) -> None:
    """Poll for ``seconds`` (what arrives late, or must not arrive, has had its chance)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while loop.time() < ends:
        await connector.poll()


async def stream_values(redis: Redis, stream: str = STREAM) -> list[Any]:
    """Each event's ``value``, in stream order."""
    entries = await redis.xrange(stream) or []
    return [orjson.loads((fields or {})["payload"])["value"] for _, fields in entries]
