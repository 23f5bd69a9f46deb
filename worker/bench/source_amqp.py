"""``bench sources --source amqp``: events/s from a private RabbitMQ node into the
stream, through ``amqp-source`` (lease, fenced append, ack after it) against a
bare aio-pika loop doing the same work without the framework (take what arrived,
one pipelined XADD per batch, one multiple ack).

Both drain the same backlog of ``events`` persistent messages with the same
prefetch, timed from the reader's start to the last message in the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import RabbitMqServer
from providers.amqp import create_amqp_connector
from worker.bench.sources import drain_rows
from worker.bench.stats import Row

STREAM = "raw-input-signals"
PREFETCH = 500


def measure(params: Row) -> list[Row]:
    """One run: ``rate`` (the connector) and ``bare_rate`` (events/s) draining ``events``
    messages into the stream of the Redis at ``redis_url`` (emptied before each)."""
    return drain_rows(params, _measure)


async def _measure(events: int, redis_url: str) -> Row:
    with RabbitMqServer() as node:
        redis = create_redis(redis_url)
        try:
            await redis.delete(STREAM)
            connector_rate = await _drain_connector(redis, node, events)
            await redis.delete(STREAM)
            bare_rate = await _drain_bare(redis, node, events)
        finally:
            await redis.aclose()
    return {"rate": connector_rate, "bare_rate": bare_rate}


async def _publish_backlog(node: RabbitMqServer, queue: str, messages: int) -> None:
    async with await aio_pika.connect(node.url, timeout=30) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True)
        publishes = [
            channel.default_exchange.publish(
                aio_pika.Message(orjson.dumps({"value": n, "unit": "C"}),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue)
            for n in range(messages)]
        for start in range(0, len(publishes), 1000):
            await asyncio.gather(*publishes[start:start + 1000])


async def _drain_connector(redis: Redis, node: RabbitMqServer, messages: int) -> float:
    await _publish_backlog(node, "bench-connector", messages)
    config = ConnectorConfig(
        name="bench-amqp", type="amqp-source", poll_interval_ms=1000,
        provider_config={"url": node.url, "queue": "bench-connector", "prefetch": PREFETCH})
    # What an earlier run on the same Redis left: its lease and state.
    await redis.delete(f"lease:{config.name}", f"connector:state:{config.name}")
    lease = Lease(redis, config.name, ttl_s=60)
    await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                               clock=SystemClock(), logger=get_logger(connector=config.name))
    reader = create_amqp_connector(config, context)
    started = time.perf_counter()
    while await redis.xlen(STREAM) < messages:
        await reader.poll()
    elapsed = time.perf_counter() - started
    await reader.aclose()
    return messages / elapsed


async def _drain_bare(redis: Redis, node: RabbitMqServer, messages: int) -> float:
    await _publish_backlog(node, "bench-bare", messages)
    arrived: deque[AbstractIncomingMessage] = deque()
    wake = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        arrived.append(message)
        wake.set()

    started = time.perf_counter()
    async with await aio_pika.connect(node.url, timeout=30) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue("bench-bare", passive=True)
        await queue.consume(on_message)
        appended = 0
        while appended < messages:
            await wake.wait()
            wake.clear()
            batch = [arrived.popleft() for _ in range(len(arrived))]
            async with redis.pipeline(transaction=False) as pipe:
                for message in batch:
                    pipe.xadd(STREAM, {"payload": message.body})
                await pipe.execute()
            await batch[-1].ack(multiple=True)
            appended += len(batch)
    return messages / (time.perf_counter() - started)
