"""``amqp-source`` on a real RabbitMQ node and a real Redis: acknowledged only after
the append, requeued when the append fails, ``message_id`` drops redeliveries, a
bad or poison message is kept raw and never comes back."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from redis.asyncio import Redis

from framework.core import TransientSourceError
from framework.core.errors import LeaseLostError
from framework.polling import (
    ConnectorConfig,
    PushConnector,
)
from framework.testing import RabbitMqServer, RedisServer, free_port
from providers.amqp import AmqpConnectError, create_amqp_connector
from tests.providers.amqp.helpers import declare, depth, publish
from tests.providers.push_rig import leased_context, poll_until, stream_values

pytestmark = pytest.mark.slow  # the session's RabbitMQ node takes ~10 s to start

STREAM = "raw-input-signals"


@pytest.fixture
async def queue(rabbitmq: RabbitMqServer) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    await declare(rabbitmq, name)
    return name


async def amqp_connector(redis: Redis, node: RabbitMqServer, queue: str, *,
                         name: str = "orders", **provider: Any) -> PushConnector[Any, Any]:
    settings = {"url": node.url, "queue": queue, **provider}
    config = ConnectorConfig(name=name, type="amqp-source", poll_interval_ms=300,
                             request_timeout_ms=10_000, provider_config=settings)
    connector = create_amqp_connector(config, await leased_context(redis, config))
    assert isinstance(connector, PushConnector)
    return connector


async def test_messages_are_appended_then_acknowledged_and_a_message_id_only_once(
    redis: Redis, rabbitmq: RabbitMqServer, queue: str,
) -> None:
    await publish(rabbitmq, queue, b'{"value": 1, "unit": "EUR"}', b'{"value": 2}', b"3",
                  b'{"value": 2}', ids=["order-1", "order-2", None, "order-2"])
    connector = await amqp_connector(redis, rabbitmq, queue)
    await poll_until(connector, redis, 3)
    await connector.poll()
    await connector.aclose()

    assert await stream_values(redis) == [1, 2, 3]
    assert await depth(rabbitmq, queue) == 0  # all acknowledged, the duplicate too
    entries = [fields for _, fields in await redis.xrange(STREAM)]
    assert [e["item_id"] for e in entries[:2]] == [f"{queue}#order-1", f"{queue}#order-2"]
    event = orjson.loads(entries[0]["payload"])
    assert (event["source"], event["nodeId"], event["unit"]) == ("amqp", queue, "EUR")
    assert event["metadata"] == {"queue": queue, "exchange": "", "routingKey": queue,
                                 "messageId": "order-1"}


async def test_a_failed_append_requeues_the_messages_for_the_next_start(
    redis: Redis, rabbitmq: RabbitMqServer, queue: str,
) -> None:
    first = await amqp_connector(redis, rabbitmq, queue)
    await first.poll()
    await redis.set("lease:orders", "another-instance", px=60_000)
    await publish(rabbitmq, queue, b'{"value": 7}', b'{"value": 8}')
    with pytest.raises(LeaseLostError):
        async with asyncio.timeout(10):
            while True:
                await first.poll()
    await first.aclose()
    assert await redis.xlen(STREAM) == 0
    assert await depth(rabbitmq, queue) == 2  # back in the queue

    second = await amqp_connector(redis, rabbitmq, queue)
    await poll_until(second, redis, 2)
    await second.aclose()
    assert await stream_values(redis) == [7, 8]


async def test_a_body_that_is_not_json_is_kept_raw_and_never_comes_back(
    redis: Redis, redis_server: RedisServer, rabbitmq: RabbitMqServer, queue: str,
) -> None:
    await publish(rabbitmq, queue, b'{"value": 1}', b"\xff{broken", b'{"value": 3}')
    connector = await amqp_connector(redis, rabbitmq, queue)
    await poll_until(connector, redis, 2)
    await connector.poll()
    await connector.aclose()

    assert await stream_values(redis) == [1, 3]
    assert await depth(rabbitmq, queue) == 0
    async with Redis.from_url(redis_server.url) as raw:
        [(_, rejected)] = await raw.xrange("connector:state:orders:rejected")
    assert rejected[b"raw"] == b"\xff{broken"
    assert b"body is not JSON" in rejected[b"error"]


async def test_a_message_delivered_too_often_is_kept_as_poison_and_stops_coming_back(
    redis: Redis, redis_server: RedisServer, rabbitmq: RabbitMqServer,
) -> None:
    queue = f"quorum-{uuid.uuid4().hex[:8]}"
    connector = await amqp_connector(redis, rabbitmq, queue, declare=True, maxDeliveries=2)
    await connector.poll()  # declares the quorum queue
    await connector.aclose()
    await publish(rabbitmq, queue, b'{"value": "poison"}', ids=["p-1"])
    await requeue_times(rabbitmq, queue, 2)  # two deliveries that did not end in an ack
    await publish(rabbitmq, queue, b'{"value": "fine"}')

    again = await amqp_connector(redis, rabbitmq, queue, declare=True, maxDeliveries=2)
    await poll_until(again, redis, 1, stream="connector:state:orders:rejected")
    await poll_until(again, redis, 1)
    await again.aclose()

    assert await stream_values(redis) == ["fine"]
    assert await depth(rabbitmq, queue) == 0
    async with Redis.from_url(redis_server.url) as raw:
        [(_, rejected)] = await raw.xrange("connector:state:orders:rejected")
    assert rejected[b"item_id"] == f"{queue}#p-1".encode()
    assert b"delivered 3 times, more than maxDeliveries (2)" in rejected[b"error"]


async def requeue_times(node: RabbitMqServer, queue: str, times: int) -> None:
    async with await aio_pika.connect(node.url, timeout=10) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        for _ in range(times):
            message = await declared.get(timeout=10)  # fails when the queue is empty
            await message.nack(requeue=True)


async def test_declare_binds_the_queue_to_an_exchange(
    redis: Redis, rabbitmq: RabbitMqServer,
) -> None:
    queue = f"bound-{uuid.uuid4().hex[:8]}"
    connector = await amqp_connector(
        redis, rabbitmq, queue, declare=True, queueType="classic",
        bindings=[{"exchange": "amq.topic", "routingKey": "plant.*.temp"}])
    await connector.poll()
    await publish(rabbitmq, queue, b'{"value": 21.5}', b'{"value": 0}', exchange="amq.topic",
                  routing_key="plant.a.temp")
    await publish(rabbitmq, queue, b'{"value": 99}', exchange="amq.topic",
                  routing_key="plant.a.humidity")
    await poll_until(connector, redis, 2)
    await connector.poll()
    await connector.aclose()
    assert await stream_values(redis) == [21.5, 0]
    event = orjson.loads((await redis.xrange(STREAM))[0][1]["payload"])
    assert event["nodeId"] == "plant.a.temp"


async def test_a_missing_queue_and_a_wrong_password_are_clear_errors(
    redis: Redis, rabbitmq: RabbitMqServer,
) -> None:
    missing = await amqp_connector(redis, rabbitmq, "no-such-queue")
    with pytest.raises(AmqpConnectError, match="queue no-such-queue") as error:
        await missing.poll()
    assert "NOT_FOUND" in str(error.value)
    await missing.aclose()

    url = rabbitmq.url.replace("guest:guest", "guest:wrong-pw")
    wrong = await amqp_connector(redis, rabbitmq, "no-such-queue", name="wrong", url=url)
    with pytest.raises(AmqpConnectError) as refused:
        await wrong.poll()
    assert "wrong-pw" not in str(refused.value)
    assert f"127.0.0.1:{rabbitmq.port}" in str(refused.value)
    await wrong.aclose()


async def test_a_broker_that_is_down_is_a_retryable_source_error_naming_it(
    redis: Redis, rabbitmq: RabbitMqServer,
) -> None:
    port = free_port()
    down = await amqp_connector(redis, rabbitmq, "orders", name="down",
                                url=f"amqp://guest:guest@127.0.0.1:{port}/")
    with pytest.raises(AmqpConnectError, match=f"amqp broker 127.0.0.1:{port}") as error:
        await down.poll()
    assert isinstance(error.value, TransientSourceError)  # the worker retries it
    assert "guest:guest" not in str(error.value)
    await down.aclose()


async def test_amqps_with_a_private_ca_and_a_password_file(
    redis: Redis, tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text("guest\n")
    with RabbitMqServer(tls=True) as node:
        queue = f"tls-{uuid.uuid4().hex[:8]}"
        await declare(node, queue)
        await publish(node, queue, b'{"value": 1}')
        connector = await amqp_connector(
            redis, node, queue, url=f"amqps://guest@localhost:{node.tls_port}/",
            tls={"caFile": str(node.ca_file)}, passwordFile=str(secret))
        await poll_until(connector, redis, 1)
        await connector.aclose()
        assert await depth(node, queue) == 0
    assert await stream_values(redis) == [1]
