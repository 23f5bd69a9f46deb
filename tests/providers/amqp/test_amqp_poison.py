"""A poison message on a real RabbitMQ: one whose append always fails (it is larger
than the Redis server accepts) comes back only ``maxDeliveries`` times, on a classic
queue (counted in Redis) as on a quorum queue (``x-delivery-count``); then it is
kept in the rejected stream and acknowledged, and the messages around it are
appended once each."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import create_redis
from framework.testing import RabbitMqServer, RedisServer
from providers.amqp.deliveries import DeliveryCounts, isolate
from tests.providers.amqp.helpers import depth, publish
from tests.providers.amqp.test_amqp_source import amqp_connector
from tests.providers.push_rig import stream_values

pytestmark = pytest.mark.slow  # the session's RabbitMQ node takes ~10 s to start

REJECTED = "connector:state:orders:rejected"
# Redis refuses a bulk argument over proto-max-bulk-len (at least 1 MB): this
# body's append can never succeed, whatever the connector does.
POISON = orjson.dumps({"value": "x" * 1_200_000})


@pytest.fixture
async def small_redis() -> AsyncIterator[Redis]:
    """A Redis of its own whose largest argument is 1 MB (the session's is untouched)."""
    with RedisServer() as server:
        client = create_redis(server.url)
        await client.config_set("proto-max-bulk-len", "1mb")
        yield client
        await client.aclose()


@pytest.mark.parametrize(("queue_type", "poison_id"),
                         [("classic", None), ("classic", "p-1"), ("quorum", None)])
async def test_a_message_whose_append_always_fails_stops_after_max_deliveries(
    small_redis: Redis, rabbitmq: RabbitMqServer, queue_type: str, poison_id: str | None,
) -> None:
    redis = small_redis
    queue = f"{queue_type}-{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {"declare": True, "queueType": queue_type, "maxDeliveries": 3,
                                "maxMessageBytes": 4 * 1024 * 1024, "prefetch": 10}
    declaring = await amqp_connector(redis, rabbitmq, queue, **settings)
    await declaring.poll()
    await declaring.aclose()
    await publish(rabbitmq, queue, b'{"value": 1}', POISON, b'{"value": 2}', b'{"value": 3}',
                  ids=[None, poison_id, None, None])

    connector = await amqp_connector(redis, rabbitmq, queue, **settings)
    failures = 0
    async with asyncio.timeout(60):
        while await redis.xlen("raw-input-signals") < 3 or not await redis.xlen(REJECTED):
            try:
                await connector.poll()
            except Exception:  # the batch holding the poison was not appended
                failures += 1
    await connector.aclose()

    # Each once (a queue may hand requeued messages back in another order).
    assert sorted(await stream_values(redis)) == [1, 2, 3]
    if queue_type == "classic":  # counted by the connector: exactly its own failures
        assert failures == 3  # its 1st delivery, then alone twice
    else:  # counted by the broker, which may count a return the connector did not cause
        assert 1 <= failures <= 3
    assert await depth(rabbitmq, queue) == 0
    [(_, rejected)] = await redis.xrange(REJECTED)
    assert re.search(r"delivered (\d+) times, more than maxDeliveries \(3\): kept as poison$",
                     rejected["error"])
    if queue_type == "classic":
        assert "delivered 4 times" in rejected["error"]
    if poison_id is not None:
        assert rejected["item_id"] == f"{queue}#{poison_id}"
    assert len(rejected["raw"]) == 64 * 1024  # kept raw, cut to the rejected stream's limit
    assert await redis.exists("connector:state:orders:deliveries") == 0  # counts forgotten


def test_a_redelivered_message_is_appended_alone() -> None:
    class Delivery:
        def __init__(self, name: str, redelivered: bool) -> None:
            self.name, self.redelivered = name, redelivered

    a, b, c, d = (Delivery("a", False), Delivery("b", False), Delivery("c", True),
                  Delivery("d", False))
    assert isolate([a, b, c, d]) == ([a, b], [c, d])
    assert isolate([c, d]) == ([c], [d])
    assert isolate([a, b]) == ([a, b], [])
    assert DeliveryCounts.field("m-1", "", "q", b"x") == "id:m-1"
    assert DeliveryCounts.field(None, "", "q", b"x") != DeliveryCounts.field(None, "", "q", b"y")
